"""Speech-recognition speed of the two Whisper backends, in one run, on the same audio.

  rtf_openai_whisper    real-time factor (audio seconds transcribed per wall-clock second) of
                        openai-whisper on the CTranslate2 tiny.en weights converted to a .pt checkpoint
  rtf_faster_whisper    the same for faster-whisper (CTranslate2, float32 like openai-whisper on CPU)
  speedup               rtf_faster_whisper / rtf_openai_whisper
  rtf_faster_whisper_int8   faster-whisper with int8 weights, for reference (not in `speedup`)

Many short clips (MELD-like utterances of one conversation: 24 espeak-ng sentences of 2 to 5 s, one source, so
packing may put them in one window as `vidprobe transcribe` does by default), on the default backend
(vidprobe.config.TranscribeConfig.backend), with transcribe.batch_size and transcribe.pack_gap:

  short_clip_one_at_a_time_clips_per_s   clips per second, one ``Transcriber.transcribe`` call each
  short_clip_batched_clips_per_s         the same through ``Transcriber.transcribe_many(pack=True)``: several
                                         clips per 30 s window, several windows per encoder call
  short_clip_speedup                     batched and packed / one at a time
  short_clip_batched_unpacked_speedup    ``transcribe_many(pack=False)`` (one window per clip) / one at a time
  short_clip_word_errors_*               word errors (substitutions, insertions, deletions) against the
                                         sentences spoken, out of short_clip_words: one at a time, batched, packed
  short_clip_wer_*                       the same as word error rates (errors / words spoken)
  short_clip_words_misattributed         packed: words given to a clip other than the one that spoke them (the
                                         packed words of all clips aligned, in order, to the words spoken)

The audio is espeak-ng speech made on the spot (4 clips of 3 to 36 s, about 60 s in all, one
longer than Whisper's 30 s window; then the short clips). Both backends decode with the same settings
(features.speech.Transcriber: greedy, temperature 0, no VAD) on the same number of threads; each
gets one untimed warm-up call, and model loading / conversion is not timed; the short clips go the three ways
in turn --short-runs times (each way's median time is kept). `same_text` says whether
the two backends wrote the same words (lower-cased, punctuation aside) and unpacked batched transcription
exactly the texts of one-at-a-time transcription (`short_clip_batched_unpacked_same_text`); packed
transcription is judged by its word error rate and misattributed words instead (`short_clip_same_text`
says whether its words happen to be the same too).

Last line: one JSON object.
  python benchmarks/transcribe.py [--threads N --repeats 1 --word-timestamps --short-clips 24 --short-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the vidprobe CLI sets it, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from vidprobe.config import TranscribeConfig  # noqa: E402
from vidprobe.features.speech import SAMPLE_RATE, Transcriber  # noqa: E402

CLIPS = [  # each clip: sentences spoken one after the other, half a second apart
    ["please open the door and turn on the light"],
    [
        "the weather report says it will rain tomorrow morning, so bring an umbrella",
        "the children played in the park until the sun went down",
    ],
    [
        "the team recorded every meeting and wrote short notes about the decisions they made",
        "could you please send me the report before the end of the week",
    ],
    [
        "we sample frames, run a frozen model on them, and store the features on disk",  # > 30 s: two windows
        "the speech in the sound track is transcribed separately",
        "this clip is longer than thirty seconds, so the recogniser has to move on to a second window",
        "my favourite colour is green and my brother likes to play football on sunday",
        "she bought three apples, two oranges and a loaf of bread at the market",
        "the train to london leaves at half past nine from platform four",
        "please open the door and turn on the light",
    ],
]
GAP = np.zeros(SAMPLE_RATE // 2, np.float32)
SHORT = [  # one utterance per clip (then half a second of silence), 2 to 5 s each
    "i can't believe you did that",
    "where were you last night",
    "oh my god, that is amazing",
    "we need to talk about the wedding",
    "could you pass me the salt please",
    "i told you it was a bad idea",
    "that's the funniest thing i have ever heard",
    "are you sure you want to do this",
    "let's go get some coffee",
    "i'm really sorry about what happened",
    "he said he would call me back",
    "no way, you're kidding me",
    "what time does the movie start",
    "she is moving to paris next month",
    "i don't want to hear another word",
    "can we just stop arguing for a minute",
    "this is the best day of my life",
    "you forgot my birthday again",
    "the pizza is getting cold",
    "why would anyone say something like that",
    "i think we should see other people",
    "wait, did you just hear that",
    "thank you so much for coming",
    "we're going to be late for the party",
]


def speak(text: str, tmp: Path) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono float32."""
    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    out = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(wav), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, np.float32).copy()


def make_clip(sentences: list[str], tmp: Path) -> np.ndarray:
    return np.concatenate([part for s in sentences for part in (speak(s, tmp), GAP)])


def timed(transcriber: Transcriber, clips: list[np.ndarray], repeats: int) -> tuple[float, list[str]]:
    """(wall seconds for `repeats` passes over the clips, transcripts of the last pass), after a warm-up."""
    transcriber.transcribe(clips[0])
    start = time.perf_counter()
    for _ in range(repeats):
        texts = [transcriber.transcribe(clip)["text"] for clip in clips]
    return time.perf_counter() - start, texts


def short_clips(
    transcriber: Transcriber, clips: list[np.ndarray], sentences: list[str], cfg: TranscribeConfig, runs: int
) -> dict:
    """Clips per second one at a time, batched and batched + packed (after a warm-up of each batched way; the
    median of `runs` runs), and how their words compare."""
    batched = dict(batch_size=cfg.batch_size, pack_gap=cfg.pack_gap, groups=["conversation"] * len(clips))
    transcriber.transcribe_many(clips[: cfg.batch_size], pack=True, **{**batched, "groups": None})
    transcriber.transcribe_many(clips[: cfg.batch_size], pack=False, **batched)
    seconds, texts = {}, {}
    for _ in range(runs):  # the three ways in turn, `runs` times: each one's median time
        for name, run in (
            ("one", lambda: [transcriber.transcribe(clip) for clip in clips]),
            ("unpacked", lambda: transcriber.transcribe_many(clips, pack=False, **batched)),
            ("packed", lambda: transcriber.transcribe_many(clips, pack=True, **batched)),
        ):
            start = time.perf_counter()
            texts[name] = [r["text"] for r in run()]
            seconds.setdefault(name, []).append(time.perf_counter() - start)
    seconds = {name: statistics.median(times) for name, times in seconds.items()}
    print(json.dumps({f"short_{name}": round(s, 2) for name, s in seconds.items()} | {"texts": texts}), flush=True)
    words = {name: [normalise(t) for t in said] for name, said in texts.items()}
    spoken = sum(len(normalise(s).split()) for s in sentences)
    errors = {name: word_errors(sentences, said) for name, said in texts.items()}
    return {
        "short_clips": len(clips),
        "short_clip_batch_size": cfg.batch_size,
        "short_clip_runs": runs,
        "short_clip_pack_gap": cfg.pack_gap,
        "short_clip_seconds": round(sum(len(c) for c in clips) / SAMPLE_RATE, 2),
        "short_clip_one_at_a_time_clips_per_s": round(len(clips) / seconds["one"], 2),
        "short_clip_batched_clips_per_s": round(len(clips) / seconds["packed"], 2),
        "short_clip_speedup": round(seconds["one"] / seconds["packed"], 2),
        "short_clip_batched_unpacked_speedup": round(seconds["one"] / seconds["unpacked"], 2),
        "short_clip_same_text": words["packed"] == words["one"],
        "short_clip_batched_unpacked_same_text": texts["unpacked"] == texts["one"],
        "short_clip_words": spoken,
        "short_clip_word_errors_one_at_a_time": errors["one"],
        "short_clip_word_errors_batched": errors["unpacked"],
        "short_clip_word_errors_packed": errors["packed"],
        "short_clip_wer_one_at_a_time": round(errors["one"] / spoken, 4),
        "short_clip_wer_batched": round(errors["unpacked"] / spoken, 4),
        "short_clip_wer_packed": round(errors["packed"] / spoken, 4),
        "short_clip_words_misattributed": misattributed(sentences, texts["packed"]),
    }


def word_errors(references: list[str], texts: list[str]) -> int:
    """Word-level edit distance (substitutions + insertions + deletions) of the texts from the references."""
    errors = 0
    for ref, hyp in zip(references, texts, strict=True):
        ref, hyp = normalise(ref).split(), normalise(hyp).split()
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            diagonal, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
        errors += row[-1]
    return errors


def misattributed(references: list[str], texts: list[str]) -> int:
    """Words a clip's transcript holds that another clip spoke: every clip's words, in order, aligned to every
    clip's spoken words, in order (word-level edit distance, with its path); a match or substitution pairing a
    word of clip i with a spoken word of clip j != i counts once. Words made up (insertions) or lost (deletions)
    are word errors, not misattributions."""
    ref = [(i, w) for i, r in enumerate(references) for w in normalise(r).split()]
    hyp = [(i, w) for i, t in enumerate(texts) for w in normalise(t).split()]
    cost = np.zeros((len(ref) + 1, len(hyp) + 1), dtype=np.int32)
    cost[:, 0], cost[0, :] = np.arange(len(ref) + 1), np.arange(len(hyp) + 1)
    for a in range(1, len(ref) + 1):
        for b in range(1, len(hyp) + 1):
            cost[a, b] = min(
                cost[a - 1, b] + 1, cost[a, b - 1] + 1, cost[a - 1, b - 1] + (ref[a - 1][1] != hyp[b - 1][1])
            )
    a, b, wrong = len(ref), len(hyp), 0
    while a and b:  # back along one cheapest path
        if cost[a, b] == cost[a - 1, b - 1] + (ref[a - 1][1] != hyp[b - 1][1]):
            wrong += ref[a - 1][0] != hyp[b - 1][0]
            a, b = a - 1, b - 1
        elif cost[a, b] == cost[a - 1, b] + 1:
            a -= 1
        else:
            b -= 1
    return int(wrong)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=1, help="passes over the clips per backend")
    parser.add_argument("--word-timestamps", action="store_true")
    parser.add_argument("--skip-int8", action="store_true")
    parser.add_argument("--short-runs", type=int, default=3, help="runs of the short clips (median time kept)")
    parser.add_argument("--short-clips", type=int, default=len(SHORT), help=f"short clips (at most {len(SHORT)})")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        clips = [make_clip(c, Path(tmp)) for c in CLIPS]
        audio_s = sum(len(c) for c in clips) / SAMPLE_RATE * args.repeats
        print(json.dumps({"clip_seconds": [round(len(c) / SAMPLE_RATE, 2) for c in clips]}), flush=True)

        common = dict(word_timestamps=args.word_timestamps, threads=args.threads, cache_dir=Path(tmp) / "cache")
        runs = {
            "openai_whisper": Transcriber("openai-whisper", **common),
            "faster_whisper": Transcriber("faster-whisper", **common),
        }
        if not args.skip_int8:
            runs["faster_whisper_int8"] = Transcriber("faster-whisper", compute_type="int8", **common)

        seconds, texts = {}, {}
        for name, transcriber in runs.items():
            seconds[name], texts[name] = timed(transcriber, clips, args.repeats)
            print(json.dumps({name: round(seconds[name], 2), "texts": texts[name]}), flush=True)

        default = TranscribeConfig()
        sentences = SHORT[: args.short_clips]
        short = short_clips(
            runs[default.backend.replace("-", "_")],
            [make_clip([s], Path(tmp)) for s in sentences],
            sentences,
            default,
            args.short_runs,
        )

    rtf = {name: audio_s / s for name, s in seconds.items()}
    print(
        json.dumps(
            {
                "audio_seconds": round(audio_s, 2),
                "clips": len(clips),
                "repeats": args.repeats,
                "threads": args.threads,
                "word_timestamps": args.word_timestamps,
                **{f"seconds_{name}": round(s, 3) for name, s in seconds.items()},
                **{f"rtf_{name}": round(r, 2) for name, r in rtf.items()},
                "speedup": round(rtf["faster_whisper"] / rtf["openai_whisper"], 2),
                "same_text": short["short_clip_batched_unpacked_same_text"]  # packed is judged by its words
                and [normalise(t) for t in texts["openai_whisper"]] == [normalise(t) for t in texts["faster_whisper"]],
                "short_clip_backend": default.backend,
                **short,
                "model": runs["faster_whisper"].model_id.split(":", 1)[1],
            }
        )
    )


if __name__ == "__main__":
    main()
