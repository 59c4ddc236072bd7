"""`vidprobe finetune`: the last blocks of the backbone trained end to end, the classifier from the best head.

For when a head on frozen features is not enough. Same config, sampling and metrics as the other stages:
clips are decoded with embed's own decoding, the model is the backbone's pooled embedding exactly as
embed stores it followed by a linear classifier, which `finetune.init_head` starts from a `vidprobe train`
run with that run's standardisation folded in. The loop, its checkpoints and its run folder are
heads/finetune/loop.py; under torchrun each process runs one rank of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from vidprobe import layout
from vidprobe.artifacts import clip_items, read_manifest, writing
from vidprobe.config import Config, ConfigError, load_config
from vidprobe.features.identity import clip_identity
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.finetune.distributed import Distributed
from vidprobe.heads.finetune.loop import FineTuner, LabeledClips
from vidprobe.heads.finetune.model import check_head
from vidprobe.heads.runs import load_run

# Keys that may change between a run and its resumption: they do not change the steps it takes.
RESUMABLE = {
    "finetune": ("name", "resume", "export", "num_workers", "bench_steps", "patience"),
    "backbone": ("device", "compile", "dtype"),
}


def run(cfg: Config) -> dict:
    """Fine-tune (or, with finetune.bench_steps, benchmark) one config; under torchrun, one rank of it."""
    problems = cfg.finetune.problems()
    if cfg.sampling.mode == "windows":
        problems.append("sampling.mode: fine-tuning classifies whole samples; use uniform or fps, not windows")
    if cfg.backbone.layers:
        problems.append("backbone.layers: fine-tuning trains on the top output (video/pooled); leave it unset")
    if problems:
        raise ConfigError("invalid fine-tune config:\n  " + "\n  ".join(problems))
    dist = Distributed.from_env(cfg.backbone.device)
    run_dir = layout.finetune_dir(cfg)
    try:  # rank 0 writes the run folder: it alone holds its lock
        with writing(cfg, run_dir, f"run {cfg.finetune.name}") if dist.main else contextlib.nullcontext():
            train, val, classes = labeled_clips(cfg)
            head, head_from = start_head(cfg, classes) if cfg.finetune.init_head else (None, None)
            result = FineTuner(
                cfg.finetune,
                cfg.sampling,
                cfg.backbone,
                train,
                val,
                classes,
                dist,
                run_dir,
                cfg.to_dict(),
                resume_identity(cfg),
                head,
                head_from,
            ).run()
    except BaseException:
        dist.close(ok=False)
        raise
    dist.close(ok=True)
    return result


def labeled_clips(cfg: Config) -> tuple[LabeledClips, LabeledClips, list[str]]:
    """Readable train and val samples of the manifest, and the classes (sorted, those seen in train)."""
    label = cfg.task.label
    if not label:
        raise ConfigError("task.label: fine-tuning trains a class head; set task.label to the manifest's class column")
    manifest = read_manifest(cfg)
    if label not in manifest.columns:
        raise ConfigError(f"task.label: the manifest has no column {label!r}; it has {list(manifest.columns)}")
    split_of = dict(zip(manifest.sample_id, manifest.split))
    name_of = dict(zip(manifest.sample_id, manifest[label].astype(str)))
    items, _ = clip_items(cfg)
    by_split: dict[str, list] = {"train": [], "val": []}
    for it in items:
        by_split.get(split_of[it.sample_id], []).append(it)
    for split, its in by_split.items():
        if not its:
            raise ConfigError(
                f"no readable samples in split {split!r}; the manifest has splits {sorted(set(split_of.values()))}"
            )
    classes = sorted({name_of[it.sample_id] for it in by_split["train"]})

    def make(split: str) -> LabeledClips:
        names = [name_of[it.sample_id] for it in by_split[split]]
        return LabeledClips(by_split[split], names, [classes.index(n) if n in classes else -1 for n in names])

    train, val = make("train"), make("val")
    unseen = sorted(set(val.names) - set(classes))
    if unseen:
        print(f"warning: validation classes {unseen} are absent from train; their samples count as wrong")
    return train, val, classes


def start_head(cfg: Config, classes: list[str]) -> tuple[HeadBundle, Path]:
    """The train run `finetune.init_head` names: its bundle, checked to start this fine-tune's classifier (a plain
    linear head over the same classes, trained on the features this fine-tune computes)."""
    where = layout.head_run(cfg, cfg.finetune.init_head)
    if where.resolve() == layout.finetune_dir(cfg).resolve():
        raise ConfigError("finetune.init_head: names this run's own folder; give the fine-tune another finetune.name")
    bundle, what = load_run(where), f"finetune.init_head: {where}"
    check_head(bundle, classes, what)
    if (where / "config.yaml").is_file():
        theirs_cfg = load_config(where / "config.yaml")
        mine = {"head.features": "video/pooled", **clip_identity(cfg.sampling, cfg.backbone)}
        theirs = {"head.features": theirs_cfg.head.features, **clip_identity(theirs_cfg.sampling, theirs_cfg.backbone)}
        differ = [f"{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in mine if mine[k] != theirs[k]]
        if differ:
            raise HeadConfigError(
                f"{what} was trained on other features than this fine-tune computes:\n  " + "\n  ".join(differ)
            )
    return bundle, where


def resume_identity(cfg: Config) -> dict:
    """What a checkpoint must share with the config that resumes it."""
    out = {"sampling": dataclasses.asdict(cfg.sampling), "task.label": cfg.task.label, "dataset.name": cfg.dataset.name}
    for section, free in RESUMABLE.items():
        out[section] = {k: v for k, v in dataclasses.asdict(getattr(cfg, section)).items() if k not in free}
    return out
