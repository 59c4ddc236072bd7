"""Tokens carry what pooling loses: clips whose class is *where* a moving square is (the left or the right half;
the same motion, size and colours) through a tiny VideoMAE. The mean of its output tokens hardly moves with the
square's side, so a linear head on video/pooled stays near chance; an attentive probe on the token grid reads
the side, both judged on the held-out test split, each over three seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vidprobe
from vidprobe.features.backbones.base import save_processor_config
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD
from vidprobe.stages.demo_data import encode

SIDE, FRAMES, SQUARE = 64, 16, 14


def write_clip(path, right: bool, rng: np.random.Generator) -> None:
    """A red square moving down one pixel a frame over grey noise, anywhere in the left or the right half."""
    frames = np.clip(110 + rng.normal(0, 12, (FRAMES, SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    x0 = int(rng.integers(0, SIDE // 2 - SQUARE)) + (SIDE // 2 if right else 0)
    y0 = int(rng.integers(0, SIDE - SQUARE - FRAMES))
    for t in range(FRAMES):
        frames[t, y0 + t : y0 + t + SQUARE, x0 : x0 + SQUARE] = (230, 60, 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode(frames, path, 8, crf=10, pix_fmt="yuv444p")


@pytest.fixture(scope="module")
def where(tmp_path_factory):
    root = tmp_path_factory.mktemp("where")
    rng = np.random.default_rng(0)
    for split, n in (("train", 80), ("val", 20), ("test", 40)):
        for side in ("left", "right"):
            for i in range(n):
                write_clip(root / "data" / split / side / f"{side}_{i:03d}.mp4", side == "right", rng)
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)  # a 2-layer VideoMAE; mean pooling (no final norm): video/pooled is its tokens' mean
    VideoMAEModel(
        VideoMAEConfig(
            image_size=SIDE,
            patch_size=16,
            num_frames=8,
            tubelet_size=2,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            use_mean_pooling=True,
        )
    ).save_pretrained(root / "model")
    save_processor_config(root / "model", "VideoMAEImageProcessor", SIDE, IMAGENET_MEAN, IMAGENET_STD)
    cfg = vidprobe.load_config(
        None,
        root=root / "data",
        cache=root / "cache",
        task={"traits": []},
        backbone={"name": "videomae", "model": str(root / "model"), "token_grid": [2, 2, 2]},
        embed={"num_workers": 0, "storage_dtype": "float16"},
        index={"num_workers": 1},
    )
    vidprobe.index(cfg)
    vidprobe.embed(cfg)
    return cfg


@pytest.mark.slow
def test_an_attentive_probe_on_tokens_reads_where_pooled_features_cannot(where):
    probes = {
        "linear": {"name": "linear", "features": "video/pooled"},
        "attentive": {"name": "attentive", "features": "video/tokens", "batch_size": 32},
    }
    test = {}
    for name, head in probes.items():
        test[name] = []
        for seed in (0, 1, 2):
            run = {"name": f"{name}-{seed}"}
            vidprobe.train(where, head={**head, "seed": seed}, run=run)
            test[name].append(vidprobe.evaluate(where, head={**head, "seed": seed}, run=run)["acc"])
    linear, attentive = np.mean(test["linear"]), np.mean(test["attentive"])
    assert linear <= 0.65, test  # chance is 0.5: pooling lost the side
    assert attentive >= 0.85 and attentive - linear >= 0.3, test
