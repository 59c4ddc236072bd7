"""Where models run: the device a setting names, and mixed precision on it (one helper for embedding
and fine-tuning alike)."""

from __future__ import annotations

import contextlib
import ctypes
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


HEAP_BLOCKS = 32 * 2**20  # glibc's largest mmap threshold on 64 bits: blocks up to this come from the heap
HEAP_KEPT = 2 * HEAP_BLOCKS  # freed heap kept for reuse (what glibc's own dynamic threshold would keep)


def reuse_freed_memory() -> bool:
    """Have glibc's malloc reuse freed memory for the same large blocks a loop allocates every batch (decoded
    frames, pixels, activations) instead of mapping fresh pages each time: every fresh page costs a fault. On
    a 2-core VM a batch of 8 tiny clips took 1,600 faults in the backbone's patch convolution alone, which ran
    4x slower on a freshly allocated input than on a reused one (0.64 vs 0.16 ms a clip). For processes whose
    allocations repeat batch after batch (DataLoader workers); memory stays at its high-water mark. False
    where the C library is not glibc (nothing changes)."""
    if not hasattr(os, "confstr") or not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        return False
    libc = ctypes.CDLL(None)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS)) and bool(libc.mallopt(M_TRIM_THRESHOLD, HEAP_KEPT))


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
