"""Where models run: the device a setting names, and mixed precision on it (one helper for embedding
and fine-tuning alike)."""

from __future__ import annotations

import contextlib
import os
import threading

import torch

DTYPES = {
    "float32": None,
    "none": None,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(name: str) -> torch.device:
    """ "auto": this process's GPU (LOCAL_RANK under torchrun) when CUDA is there, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def native_threads() -> int:
    """Threads of this process that Python did not start: after a parallel torch op on the CPU, GNU OpenMP's
    pool. A forked child that opens a parallel region of its own while the parent holds that pool waits
    forever (libgomp is not fork-safe; pytorch/pytorch#17199). 0 where /proc is missing."""
    try:
        return max(0, len(os.listdir("/proc/self/task")) - threading.active_count())
    except OSError:
        return 0


def autocast_dtype(setting: str, device: torch.device, key: str, what: str, say=print) -> torch.dtype | None:
    """The autocast dtype a setting names (float32/none: none). It applies on CUDA only: elsewhere `say`
    notes that `what` runs in float32. `key` is the config key, for the note."""
    dtype = DTYPES[setting]
    if dtype is not None and device.type != "cuda":
        say(f"note: {key}={setting} applies on CUDA; on {device.type} {what} runs in float32")
        return None
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`; nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
