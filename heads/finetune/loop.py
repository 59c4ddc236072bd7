"""The fine-tune loop: train the unfrozen blocks and the classifier on decoded clips, evaluate every epoch,
keep the best, checkpoint everything, and (bench mode) time the steps instead.

It writes into its run folder: `config.yaml`, `metrics.json` (validation, best epoch), `history.tsv`
(per epoch; epoch 0 is the model before any update), `steps.tsv` (per optimiser step: loss, lr),
`timing.tsv` (seconds per epoch, kept apart so the other outputs are the same on every run),
`predictions.csv` (best epoch), `failures.json` (videos that could not be decoded, skipped),
`checkpoints/best.pt` and `last.pt`, `bench.json` (bench mode) and `model/` (export).

Repeatable: the data order is DistributedSampler's (seed + epoch), on one process as under torchrun; each
sample's augmentation is drawn from (seed, epoch, sample index), so it depends neither on workers nor on
ranks; checkpoints carry the model, optimiser, schedule, scaler and RNG states, so a resumed run takes the
same steps as one never stopped. `finetune.batch_size` is per process: an optimiser step sees
batch_size x accumulate x world size clips, and its gradient is the mean over all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm
from vidprobe.features.augment import Augment, videomix
from vidprobe.features.backbones import build_backbone
from vidprobe.features.clips import AugmentedClips, ClipDataset, Item, clip_shape, collate, worker_init
from vidprobe.features.config import BackboneConfig, SamplingConfig
from vidprobe.features.devices import autocast, autocast_dtype
from vidprobe.features.files import remove_partials, write_json, write_table, write_yaml
from vidprobe.features.video import normalize
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.config import FinetuneConfig
from vidprobe.heads.errors import HeadConfigError, TrainingFailed
from vidprobe.heads.finetune import checkpoint
from vidprobe.heads.finetune.checkpoint import load_checkpoint, rng_state, set_rng_state
from vidprobe.heads.finetune.distributed import Distributed
from vidprobe.heads.finetune.model import FineTuneModel, classifier_from_head, param_groups, unfreeze
from vidprobe.heads.metrics import classification_metrics, lower_is_better
from vidprobe.heads.schedules import warmup_then_decay
from vidprobe.heads.trainer import seed_everything


@dataclass
class LabeledClips:
    """The clips of one split and their classes."""

    items: list[Item]
    names: list[str]  # class name of each sample
    labels: list[int]  # index into the classes; -1: a class absent from train (counted wrong)


@dataclass
class Step:
    loss: float  # mean cross-entropy over the step's clips, all ranks
    clips: int  # clips in the step, all ranks
    lr: float  # finetune.lr times the schedule's factor at this step
    wait: float  # seconds waiting for decoded batches
    h2d: float  # seconds moving them to the device and normalising
    compute: float  # seconds of forward, backward and optimiser step


def check_monitor(ft: FinetuneConfig, classes: list[str]) -> None:
    allowed = ["val_loss", "acc", "macro_f1"] + (["top5"] if len(classes) > 5 else [])
    if ft.monitor not in allowed:
        raise HeadConfigError(f"finetune.monitor: {ft.monitor!r} is not measured here; choose one of {allowed}")


class FineTuner:
    """Everything one fine-tune process holds: data, model, optimiser, schedule; `run` drives it.

    `config`: the resolved config, saved as the run's config.yaml; `identity`: what a checkpoint must share
    with the config that resumes it; `head`: a trained head bundle whose linear class head starts the
    classifier (`head_from` names where it came from).
    """

    def __init__(
        self,
        ft: FinetuneConfig,
        sampling: SamplingConfig,
        backbone: BackboneConfig,
        train: LabeledClips,
        val: LabeledClips,
        classes: list[str],
        dist: Distributed,
        run_dir: Path,
        config: dict,
        identity: dict,
        head: HeadBundle | None = None,
        head_from: Path | None = None,
    ):
        self.ft, self.dist, self.dir, self.config, self.identity = ft, dist, run_dir, config, identity
        self.train_split, self.val_split, self.classes = train, val, classes
        check_monitor(ft, classes)
        self.sign = 1.0 if lower_is_better(ft.monitor) else -1.0  # sign * value: lower is better
        self.bb = bb = build_backbone(backbone)
        dist.connect()  # after loading: transformers' save_pretrained (random-weight backbones) writes on rank 0 only
        self.frames, self.size = clip_shape(sampling, bb)
        blocks = bb.blocks()
        seed_everything(ft.seed)
        random.seed(ft.seed)
        self.model = FineTuneModel(bb, blocks.dim, len(classes))
        chosen = unfreeze(self.model, blocks, ft.unfreeze_blocks)
        self.head_from = head_from if head is not None else None
        if head is not None:
            classifier_from_head(self.model, head, f"finetune.init_head: {head_from}")
        if ft.grad_checkpointing:
            bb.enable_checkpointing(blocks)
        if backbone.compile:
            dist.say("note: backbone.compile applies to embed; finetune runs the model eagerly")
        dev = dist.device
        self.model.to(dev)
        self.amp = autocast_dtype(ft.amp, dev, "finetune.amp", "training", dist.say)
        self.net = self.model
        if dist.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None, forward_sync_buffers=False
            )
        self.opt = torch.optim.AdamW(param_groups(self.model, chosen, ft))
        augment = Augment(ft.seed, tuple(ft.augment_crop_scale), ft.augment_flip, ft.augment_jitter)
        self.train_data = AugmentedClips(train.items, sampling, self.frames, self.size, train.labels, augment)
        self.val_data = ClipDataset(val.items, sampling, self.frames, self.size, val.labels).with_views(
            ft.eval_views, ft.eval_crops
        )
        self.sampler = DistributedSampler(
            self.train_data, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=ft.seed
        )
        micro = math.ceil(len(self.sampler) / ft.batch_size)
        self.steps_per_epoch = math.ceil(micro / ft.accumulate)
        self.total_steps = self.steps_per_epoch * ft.epochs
        self.warmup_steps = self.steps_per_epoch * ft.warmup_epochs
        self.frozen_steps = self.steps_per_epoch * ft.freeze_epochs  # gradual: the classifier alone first
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, [self.backbone_lr_factor if g["backbone"] else self.lr_factor for g in self.opt.param_groups]
        )
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)
        self.failures: dict[str, tuple[str, str, str]] = {}  # sample_id -> (split, kind, error)
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.params = sum(p.numel() for p in self.model.parameters())
        last = "all" if ft.unfreeze_blocks == -1 else f"last {ft.unfreeze_blocks}"
        dist.say(
            f"finetune {ft.name}: {bb.name}, {last} of {len(blocks.blocks)} blocks + classifier trainable "
            f"({self.trainable / 1e6:.2f}M of {self.params / 1e6:.2f}M "
            f"parameters); {len(train.items)} train / {len(val.items)} val clips, "
            f"{len(classes)} classes; {self.steps_per_epoch} steps/epoch of "
            f"{ft.batch_size} x {ft.accumulate} x {dist.world} clips on {dev}"
            + (f"; classifier from {self.head_from}" if self.head_from else "")
        )

    # -- set-up helpers

    def lr_factor(self, step: int) -> float:
        """Linear warm-up over warmup_epochs, then cosine decay to zero at the last step (per optimiser step)."""
        return warmup_then_decay(1.0, step, self.warmup_steps, self.total_steps)

    def backbone_lr_factor(self, step: int) -> float:
        """The unfrozen blocks' schedule: zero for the first finetune.freeze_epochs, then the common one."""
        return 0.0 if step < self.frozen_steps else self.lr_factor(step)

    def autocast(self):
        return autocast(self.dist.device, self.amp)

    def loader(self, data, sampler=None, batch_size: int = 1) -> DataLoader:
        workers = self.ft.num_workers
        return DataLoader(
            data,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.dist.device.type == "cuda",
            worker_init_fn=worker_init if workers else None,
            generator=torch.Generator().manual_seed(self.ft.seed),
        )  # worker seeds not from the global RNG

    def clock(self, timed: bool) -> float:
        if timed and self.dist.device.type == "cuda":
            torch.cuda.synchronize(self.dist.device)
        return time.perf_counter()

    def note_failures(self, failed: list[tuple[str, str, str]], split: str) -> None:
        for sample_id, kind, error in failed:
            self.failures.setdefault(sample_id, (split, kind, error))

    # -- training and evaluation

    def steps(self, epoch: int, timed: bool = False) -> Iterator[Step]:
        """The optimiser steps of one epoch. A micro-batch's loss is its summed cross-entropy over the clips
        that micro-batch has on all ranks (a count reduced across ranks), divided by the step's micro-batches:
        the gradient is the mean over the step's clips however they are split between ranks, and whichever
        of them failed to decode (exactly so when micro-batches are of equal size). A micro-batch with no
        decodable clip runs a blank clip at weight 0, so every rank takes part in every gradient reduction."""
        self.sampler.set_epoch(epoch)
        self.train_data.epoch = epoch
        loader = self.loader(self.train_data, self.sampler, self.ft.batch_size)
        n, acc, dist, dev = len(loader), self.ft.accumulate, self.dist, self.dist.device
        self.net.train()
        batches = iter(loader)
        wait = h2d = compute = 0.0
        loss_sum, clips = torch.zeros((), dtype=torch.float64, device=dev), 0
        for k in range(n):
            t0 = self.clock(timed)
            batch = next(batches)
            t1 = self.clock(timed)
            self.note_failures(batch["failed"], "train")
            y = batch["labels"]
            x = batch["clips"] if len(y) else torch.zeros(1, self.frames, 3, self.size, self.size, dtype=torch.uint8)
            x = normalize(x.to(dev, non_blocking=True), self.bb.mean, self.bb.std)
            y = (y if len(y) else torch.zeros(1, dtype=torch.long)).to(dev, non_blocking=True)
            mix_gen = torch.Generator().manual_seed(self.ft.seed * 1_000_003 + epoch * 10_007 + k * 101 + dist.rank)
            x, y_mix, lam = videomix(x, y, self.ft.videomix, self.ft.videomix_alpha, mix_gen)
            t2 = self.clock(timed)
            first = k - k % acc
            group = min(acc, n - first)
            last = k == first + group - 1
            here = count = len(batch["labels"])
            if dist.world > 1:
                count = int(dist.all_sum(torch.tensor(float(here), device=dev)).item())
            no_sync = self.net.no_sync() if dist.world > 1 and not last else contextlib.nullcontext()
            with no_sync:
                with self.autocast():
                    logits = self.net(x)
                part = (
                    lam * F.cross_entropy(logits.float(), y, reduction="sum")
                    + (1 - lam) * F.cross_entropy(logits.float(), y_mix, reduction="sum")
                ) * float(here > 0)
                self.scaler.scale(part * (dist.world / max(count, 1) / group)).backward()
            loss_sum += part.detach().double()
            clips += count
            if last:
                lr = self.ft.lr * self.lr_factor(self.sched.last_epoch)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
                dist.all_sum(loss_sum)
                loss = loss_sum.item() / max(clips, 1)
                t3 = self.clock(timed)
                yield Step(loss, clips, lr, wait + t1 - t0, h2d + t2 - t1, compute + t3 - t2)
                wait = h2d = compute = 0.0
                loss_sum.zero_()
                clips = 0
            else:
                t3 = self.clock(timed)
                wait, h2d, compute = wait + t1 - t0, h2d + t2 - t1, compute + t3 - t2

    @torch.inference_mode()
    def evaluate(self, desc: str) -> tuple[dict, pd.DataFrame]:
        """Validation metrics and predictions: each rank decodes its share, logits averaged over each sample's
        views and crops, gathered, and the metrics computed on all of them (the same on every rank). Videos
        that fail to decode are left out of the metrics (as they are out of a feature set) and counted."""
        dist, dev = self.dist, self.dist.device
        self.model.eval()
        per = self.ft.eval_views * self.ft.eval_crops
        share = Subset(self.val_data, range(dist.rank, len(self.val_data), dist.world))
        found: dict[int, np.ndarray] = {}
        failed: list = []
        for batch in tqdm(
            self.loader(share, batch_size=max(1, self.ft.batch_size // per)),
            desc=desc,
            unit="batch",
            leave=False,
            disable=not dist.main,
            dynamic_ncols=True,
        ):
            failed += batch["failed"]
            if batch["clips"] is None:
                continue
            out = []
            for chunk in batch["clips"].split(self.ft.batch_size):
                with self.autocast():
                    x = normalize(chunk.to(dev, non_blocking=True), self.bb.mean, self.bb.std)
                    out.append(self.model(x).float().cpu())
            logits, at = torch.cat(out), 0
            for sample, index in zip(batch["samples"], batch["index"]):
                v, c = sample["views"]
                found[index] = logits[at : at + v * c].mean(0).numpy()
                at += v * c
        self.note_failures(failed, "val")
        for part_found, part_failures in dist.gather((found, self.failures)):  # and the ranks' training failures
            found.update(part_found)
            for sample_id, failure in part_failures.items():
                self.failures.setdefault(sample_id, failure)
        if not found:
            raise TrainingFailed("no validation sample could be decoded; see failures.json")
        order = sorted(found)
        logits = torch.from_numpy(np.stack([found[i] for i in order]))
        y = np.array([self.val_split.labels[i] for i in order])
        probs = logits.softmax(1)
        pred = probs.argmax(1).numpy()
        known = torch.from_numpy(y >= 0)
        val_loss = F.cross_entropy(logits[known], torch.from_numpy(y)[known]).item() if known.any() else float("nan")
        metrics = {"val_loss": val_loss, **classification_metrics(y, pred, len(self.classes), probs.numpy())}
        predictions = pd.DataFrame(
            {
                "sample_id": [self.val_split.items[i].sample_id for i in order],
                "label": [self.val_split.names[i] for i in order],
                "pred": [self.classes[j] for j in pred],
                "confidence": probs.max(1).values.numpy(),
            }
        )
        return metrics, predictions

    # -- checkpoints

    def whole_state(self, epoch: int, history: list, steps: list, best: dict, stopped: bool) -> dict | None:
        """The whole state after `epoch` (gathered from every rank); None on ranks other than 0."""
        states = self.dist.gather(rng_state(self.dist.device))
        if not self.dist.main:
            return None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": states,
            "data_order": {"sampler": "DistributedSampler", "seed": self.ft.seed, "next_epoch": epoch + 1},
            "epoch": epoch,
            "history": history,
            "steps": steps,
            "best": best,
            "stopped": stopped,
            "classes": self.classes,
            "world_size": self.dist.world,
            "fingerprint": self.identity,
            "failures": [[k, *v] for k, v in self.failures.items()],
        }

    def restore(self, path: Path) -> dict:
        ck = load_checkpoint(path, self.identity, self.dist.world)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"][self.dist.rank], self.dist.device)
        self.failures.update({k: tuple(v) for k, *v in ck["failures"]})
        return ck

    # -- outputs (rank 0)

    def write_epoch(self, history: list, steps: list) -> None:
        write_table(self.dir / "history.tsv", pd.DataFrame(history), sep="\t", float_format="%.6g")
        write_table(
            self.dir / "steps.tsv",
            pd.DataFrame(steps, columns=["step", "epoch", "loss", "lr", "clips"]),
            sep="\t",
            float_format="%.9g",
        )
        failures = [{"sample_id": k, "split": s, "kind": kind, "error": e} for k, (s, kind, e) in self.failures.items()]
        write_json(self.dir / "failures.json", failures)

    def write_best(self, metrics: dict, predictions: pd.DataFrame) -> None:
        write_table(self.dir / "predictions.csv", predictions)
        write_json(self.dir / "metrics.json", {k: v for k, v in metrics.items() if k != "val_loss"})

    # -- the run

    def run(self) -> dict:
        dist, ft = self.dist, self.ft
        ckpt_dir = self.dir / "checkpoints"
        if dist.main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            remove_partials(ckpt_dir)
            write_yaml(self.dir / "config.yaml", self.config)
        if ft.bench_steps > 0:
            return self.bench()
        start_time = time.perf_counter()
        last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
        if ft.resume and last_path.is_file():
            ck = self.restore(last_path)
            history, steps, best, stopped, first = (
                ck["history"],
                ck["steps"],
                ck["best"],
                ck["stopped"],
                ck["epoch"] + 1,
            )
            dist.say(f"resumed {self.ft.name} from {last_path} after epoch {ck['epoch']}")
        else:
            if ft.resume:
                dist.say(f"note: finetune.resume: no checkpoint at {last_path}; starting from the beginning")
            metrics, predictions = self.evaluate("epoch 0 (before any update)")
            history = [{"epoch": 0, "train_loss": float("nan"), **metrics, "lr": 0.0, "skipped": len(self.failures)}]
            steps, best, stopped, first = [], {"score": self.sign * metrics[ft.monitor], "epoch": 0}, False, 1
            state = self.whole_state(0, history, steps, best, stopped)
            if dist.main:
                last_path.unlink(missing_ok=True)  # a fresh run must not be resumed from an older one's state
                (self.dir / "timing.tsv").write_text("epoch\tseconds\n")
                checkpoint.save_checkpoint(state, best_path)
                self.write_best(metrics, predictions)
                self.write_epoch(history, steps)
            dist.say(self.epoch_line(history[-1]))
        for epoch in range(first, ft.epochs + 1):
            if stopped:
                break
            t0 = time.perf_counter()
            bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {epoch}/{ft.epochs}",
                unit="step",
                disable=not dist.main,
                dynamic_ncols=True,
            )
            done = []
            for step in self.steps(epoch):
                steps.append(
                    {"step": len(steps) + 1, "epoch": epoch, "loss": step.loss, "lr": step.lr, "clips": step.clips}
                )
                done.append(step)
                bar.update(1)
                rate = sum(s.clips for s in done) / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{step.loss:.4f}", clips_s=f"{rate:.1f}")
            bar.close()
            metrics, predictions = self.evaluate(f"epoch {epoch} validation")
            train_loss = sum(s.loss * s.clips for s in done) / max(1, sum(s.clips for s in done))
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    **metrics,
                    "lr": done[-1].lr if done else 0.0,
                    "skipped": len(self.failures),
                }
            )
            score = self.sign * metrics[ft.monitor]
            improved = score < best["score"]
            if improved:
                best = {"score": score, "epoch": epoch}
            stopped = epoch - best["epoch"] >= ft.patience
            state = self.whole_state(epoch, history, steps, best, stopped)
            if dist.main:
                checkpoint.save_checkpoint(state, last_path)
                if improved:
                    shutil.copyfile(last_path, best_path)
                    self.write_best(metrics, predictions)
                self.write_epoch(history, steps)
                with (self.dir / "timing.tsv").open("a") as f:  # wall time lives apart: outputs stay reproducible
                    f.write(f"{epoch}\t{time.perf_counter() - t0:.3f}\n")
            dist.say(self.epoch_line(history[-1]) + (" (best)" if improved else ""))
        return self.finish(history, steps, best, time.perf_counter() - start_time)

    def epoch_line(self, row: dict) -> str:
        shown = ", ".join(
            f"{k} {row[k]:.4f}"
            for k in ("train_loss", "val_loss", "acc", "macro_f1", "top5")
            if k in row and not (isinstance(row[k], float) and math.isnan(row[k]))
        )
        return f"epoch {row['epoch']}: {shown}"

    def finish(self, history: list, steps: list, best: dict, seconds: float) -> dict:
        dist, ft = self.dist, self.ft
        best_row = history[best["epoch"]]
        metrics = {k: best_row[k] for k in ("acc", "macro_f1", "top5") if k in best_row}
        exported = None
        if ft.export and dist.main:
            state = torch.load(self.dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["model"]
            self.model.load_state_dict(state)
            name, exported = self.export()
            command = (
                f"vidprobe embed -c {self.dir / 'config.yaml'} backbone.name={name} backbone.model={exported} "
                f"embed.feature_set={ft.name}"
            )  # this run's resolved config: same dataset and sampling
            print(
                f"exported the fine-tuned backbone (epoch {best['epoch']}) to {exported}; re-embed with it:\n  {command}"
            )
        start = history[0]
        dist.say(
            f"finetune {ft.name}: best epoch {best['epoch']}/{history[-1]['epoch']} by {ft.monitor}: "
            + ", ".join(f"{k} {v:.4f} (epoch 0: {start[k]:.4f})" for k, v in metrics.items())
            + f"; {seconds:.0f} s; {len(self.failures)} videos skipped; {self.dir}"
        )
        return {
            "dir": self.dir,
            "metrics": metrics,
            "best_epoch": best["epoch"],
            "epochs": history[-1]["epoch"],
            "history": history,
            "steps": steps,
            "skipped": len(self.failures),
            "seconds": seconds,
            "export": exported,
        }

    def export(self) -> tuple[str, Path]:
        """The fine-tuned backbone in `<run>/model/`, where `vidprobe embed` loads it: (backbone name, path)."""
        out = self.dir / "model"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return self.bb.export(out, self.ft.name, self.model.classifier, self.classes)

    def bench(self) -> dict:
        """Time bench_steps optimiser steps (the first is reported apart, as warm-up); write bench.json."""
        dist, ft, dev = self.dist, self.ft, self.dist.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        records: list[Step] = []
        epoch = 1
        while len(records) < ft.bench_steps:
            for step in self.steps(epoch, timed=True):
                records.append(step)
                dist.say(
                    f"bench step {len(records)}/{ft.bench_steps}: {step.wait + step.h2d + step.compute:.3f} s "
                    f"(data wait {step.wait:.3f}, to device {step.h2d:.3f}, compute {step.compute:.3f})"
                )
                if len(records) == ft.bench_steps:
                    break
            epoch += 1
        steady = records[1:] if len(records) > 1 else records
        seconds = sum(s.wait + s.h2d + s.compute for s in steady)
        step_s = seconds / len(steady)
        peak, kind = peak_memory_mb(dev)
        peak = max(dist.gather(peak))
        out = {
            "device": str(dev),
            "backbone": self.bb.name,
            "world_size": dist.world,
            "batch_size": ft.batch_size,
            "accumulate": ft.accumulate,
            "unfreeze_blocks": ft.unfreeze_blocks,
            "trainable_params": self.trainable,
            "params": self.params,
            "amp": ft.amp if self.amp else "none",
            "grad_checkpointing": ft.grad_checkpointing,
            "num_workers": ft.num_workers,
            "frames": self.frames,
            "size": self.size,
            "steps": len(records),
            "steps_timed": len(steady),
            "data_wait_s": float(np.mean([s.wait for s in steady])),
            "h2d_s": float(np.mean([s.h2d for s in steady])),
            "compute_s": float(np.mean([s.compute for s in steady])),
            "step_s": step_s,
            "first_step_s": records[0].wait + records[0].h2d + records[0].compute,
            "clips_per_s": sum(s.clips for s in steady) / seconds,
            "peak_mem_mb": peak,
            "peak_mem_kind": kind,
            "steps_per_epoch": self.steps_per_epoch,
            "est_epoch_s": step_s * self.steps_per_epoch,
            "est_total_s": step_s * self.steps_per_epoch * ft.epochs,
            "note": "estimates cover training steps only, not validation",
            "per_step": [dataclasses.asdict(s) for s in records],
        }
        if dist.main:
            write_json(self.dir / "bench.json", out)
            print(
                f"bench: {out['clips_per_s']:.2f} clips/s, {step_s:.3f} s/step (data wait {out['data_wait_s']:.3f}, "
                f"to device {out['h2d_s']:.3f}, compute {out['compute_s']:.3f}), peak {peak:.0f} MB ({kind}); "
                f"epoch ~{out['est_epoch_s']:.0f} s, {ft.epochs} epochs ~{out['est_total_s']:.0f} s "
                f"-> {self.dir / 'bench.json'}"
            )
        return out


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS (main process; workers apart)"
