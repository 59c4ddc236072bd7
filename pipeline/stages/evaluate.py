"""`vidprobe evaluate`: a trained run's metrics, predictions and confusion matrix on one split."""

from __future__ import annotations

from vidprobe import layout
from vidprobe.artifacts import head_inputs, writing
from vidprobe.config import Config
from vidprobe.heads.data import load_split
from vidprobe.heads.runs import load_run, save_evaluation


def run(cfg: Config) -> dict:
    split = cfg.evaluate.split
    bundle = load_run(layout.run_dir(cfg))
    inputs = head_inputs(cfg)
    bundle.check_inputs(inputs.hashes)
    data = load_split(cfg.head, cfg.task, inputs.manifest, inputs.features, split, inputs.fused)
    with writing(cfg, layout.eval_dir(cfg, split), f"evaluation of {cfg.run.name} on {split}"):
        return save_evaluation(
            layout.eval_dir(cfg, split), bundle, data, split, cfg.head, (cfg.text.model, cfg.backbone)
        )
