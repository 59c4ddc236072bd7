"""CTranslate2 Whisper folders: reading a `model.bin` without ctranslate2, hashing a folder, and converting one
into an openai-whisper checkpoint (the same weights for both backends)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.files import atomic_path


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
        return data[pos - n : pos - 1].decode("utf-8")

    version = take("I")
    if not 4 <= version <= 6:  # 4 introduced the dtype byte; Whisper models are all newer
        raise FeatureConfigError(
            f"transcribe.model: {model_bin}: unsupported CTranslate2 binary version {version}; "
            "pass a Whisper model converted by CTranslate2 3 or newer"
        )
    name = text()
    take("I")  # spec revision
    variables = []
    for _ in range(take("I")):
        var = text()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        nbytes = take("I")
        buf = data[pos : pos + nbytes]
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
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir} holds a {name} model, not Whisper; pass a "
            "CTranslate2 Whisper folder (e.g. one `ct2-transformers-converter` made of openai/whisper-*)"
        )
    if "decoder/projection/weight" in v and not np.array_equal(
        v["decoder/projection/weight"], v["decoder/embeddings/weight"]
    ):
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir}: output projection is not tied to the token embedding; openai-whisper cannot load it (use transcribe.backend=faster-whisper)"
        )
    if "decoder/projection/bias" in v and np.any(v["decoder/projection/bias"]):
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir}: output projection has a bias, which openai-whisper lacks; openai-whisper cannot load it (use transcribe.backend=faster-whisper)"
        )
    if int(v.get("decoder/pre_norm", 1)) != 1:
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir}: not a pre-norm Whisper decoder; openai-whisper cannot load it (use transcribe.backend=faster-whisper)"
        )
    if bool(v.get("decoder/scale_embeddings", 0)):
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir}: scaled embeddings are not Whisper's; openai-whisper cannot load it (use transcribe.backend=faster-whisper)"
        )
    if int(v.get("decoder/activation", 3)) != 3:  # common_spec.Activation.GELU
        raise FeatureConfigError(
            f"transcribe.model: {ct2_dir}: decoder activation is not exact GELU; openai-whisper cannot load it (use transcribe.backend=faster-whisper)"
        )

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
        [layer, head] for layer in range(n_dec // 2, n_dec) for head in range(dims.n_text_head)
    ]
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
