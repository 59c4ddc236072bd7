"""What `vidprobe train` and `vidprobe sweep` share: heads trained on cached features into their run folders.

`train_runs` takes configs that may train in one pass (one config for `train`; a batch the sweep groups with
`heads.tasks.batch_key`): it holds each run folder's write lock from the start, reads the inputs and splits
once, trains the heads together (heads.tasks) and writes each run folder as `vidprobe train` writes it.
`evaluate_run` scores a trained run on a split (`vidprobe evaluate`, and the report's best run).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from vidprobe import layout
from vidprobe.artifacts import head_inputs, read_classes, writing
from vidprobe.config import Config
from vidprobe.heads.data import load_split
from vidprobe.heads.runs import load_run, save_evaluation, save_run
from vidprobe.heads.tasks import check_task, train_heads


def train_runs(cfgs: list[Config]) -> list[dict]:
    """Train the heads of `cfgs` (the first config's task, inputs and splits serve all) and write their run
    folders; each run's validation metrics."""
    first = cfgs[0]
    check_task(first.head, first.task)
    with contextlib.ExitStack() as locks:  # one writer per run folder, from the start: a second refuses at once
        for c in cfgs:
            locks.enter_context(writing(c, layout.run_dir(c), f"run {c.run.name}"))
        inputs = head_inputs(first, with_prompts=True)
        tr, va = (
            load_split(first.head, first.task, inputs.manifest, inputs.features, split, inputs.fused)
            for split in ("train", "val")
        )
        trained = train_heads(
            [c.head for c in cfgs],
            first.task,
            tr,
            va,
            classes=read_classes(first),
            prompts=inputs.prompts,
            coop_clip=(first.text.model, first.backbone),
            inputs=inputs.hashes,
        )
        return [
            save_run(layout.run_dir(c), t, c.head, c.to_dict(), (c.text.model, c.backbone))
            for c, t in zip(cfgs, trained)
        ]


def evaluate_run(cfg: Config, split: str | None = None, out: Path | None = None) -> dict:
    """The run `run.name`'s metrics on `split` (default evaluate.split), with its predictions, per-class AP and
    confusion written to `out` (default `<run>/eval/<split>/`)."""
    split = split or cfg.evaluate.split
    out = out or layout.eval_dir(cfg, split)
    bundle = load_run(layout.run_dir(cfg))
    inputs = head_inputs(cfg)
    bundle.check_inputs(inputs.hashes)
    data = load_split(cfg.head, cfg.task, inputs.manifest, inputs.features, split, inputs.fused)
    with writing(cfg, out, f"evaluation of {cfg.run.name} on {split}"):
        return save_evaluation(out, bundle, data, split, cfg.head, (cfg.text.model, cfg.backbone))
