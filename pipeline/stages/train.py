"""`vidprobe train`: heads on cached features, one per target kind (class, multi-label classes, numeric traits).

Reads the feature sets the head config names (checked against this config, or recorded by their config
hash), trains with heads.tasks and writes the run folder `<cache>/runs/<run.name>/` (heads.runs).
"""

from __future__ import annotations

import contextlib

from vidprobe.heads.data import load_split
from vidprobe.heads.runs import save_run
from vidprobe.heads.tasks import can_batch, check_task, train_heads
from vidprobe import layout
from vidprobe.artifacts import head_inputs, read_classes, writing
from vidprobe.config import Config, with_overrides


def run(cfg: Config) -> dict:
    """Train the heads of one config; write its run folder; return the validation metrics."""
    return run_many([cfg])[0]


def run_many(cfgs: list[Config]) -> list[dict]:
    """Several runs that differ only in `head.lr`, `head.weight_decay` and `run.name` (see `can_batch`):
    the features are loaded once and the class heads train in one pass; each config gets the same run
    folder it would get alone."""
    cfg = cfgs[0]
    check_task(cfg.head, cfg.task)
    if len(cfgs) > 1 and not all(can_batch(c.head, c.task) and same_but_optimiser(c, cfg) for c in cfgs):
        raise ValueError("run_many: the configs must be batchable and differ only in head.lr / head.weight_decay")
    with contextlib.ExitStack() as locks:  # one writer per run folder, from the start: a second refuses at once
        for c in cfgs:
            locks.enter_context(writing(c, layout.run_dir(c), f"run {c.run.name}"))
        inputs = head_inputs(cfg, with_prompts=True)
        tr, va = (load_split(cfg.head, cfg.task, inputs.manifest, inputs.features, split, inputs.fused)
                  for split in ("train", "val"))
        trained = train_heads([c.head for c in cfgs], cfg.task, tr, va, classes=read_classes(cfg),
                              prompts=inputs.prompts, coop_clip=(cfg.text.model, cfg.backbone), inputs=inputs.hashes)
        return [save_run(layout.run_dir(c), t, c.head, c.to_dict(), (c.text.model, c.backbone))
                for c, t in zip(cfgs, trained)]


def same_but_optimiser(a: Config, b: Config) -> bool:
    strip = lambda c: with_overrides(c, {"head.lr": 0.0, "head.weight_decay": 0.0, "run.name": "-"}).to_dict()  # noqa: E731
    return strip(a) == strip(b)
