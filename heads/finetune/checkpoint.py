"""Whole-state checkpoints: model, optimiser, schedule, scaler and every RNG (torch, CUDA, numpy, Python), as
tensors and plain values that `torch.load(..., weights_only=True)` reads. A run resumed from one takes the
same steps as a run never stopped."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from vidprobe.features.files import save_torch
from vidprobe.features.identity import differing
from vidprobe.heads.errors import HeadConfigError


def rng_state(device: torch.device) -> dict:
    """torch, CUDA, numpy and Python RNG states as tensors and plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(state: dict, path: Path) -> None:
    """Write a checkpoint whole or not at all."""
    save_torch(state, path)


def load_checkpoint(path: Path, identity: dict, world: int) -> dict:
    """A checkpoint to resume from, refused when it was made with another recipe (`identity`: what a
    checkpoint must share with the config that resumes it) or by another number of processes."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    differ = differing(ck["fingerprint"], identity)
    if differ:
        raise HeadConfigError(
            f"finetune.resume: {path} was made with other values of {', '.join(differ)}; "
            "restore them, or start afresh without finetune.resume"
        )
    if ck["world_size"] != world:
        raise HeadConfigError(
            f"finetune.resume: {path} was made by {ck['world_size']} processes, this run has "
            f"{world}; the data split depends on it"
        )
    return ck
