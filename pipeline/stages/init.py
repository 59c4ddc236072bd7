"""`vidprobe init DIR --dataset NAME --root VIDEOS [key=value ...]`: a DVC project for one's own videos.

Writes into DIR:
- `params.yaml`: the built-in (or given) config it includes and only what differs from it, commented;
- `dvc.yaml`: stamp -> index -> embed -> train -> evaluate, each stage `vidprobe <stage> -c params.yaml`,
  depending on what it reads (vidprobe.project), its metrics and plots declared for `dvc metrics|plots show`;
- `.gitignore`, `.dvcignore`;
and makes DIR a DVC project (inside a git work tree `dvc init`, `--subdir` below its top; elsewhere
`git init` first where git is installed, else `dvc init --no-scm`). The config is validated and the videos
listed before anything is written.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import vidprobe
import yaml
from vidprobe import layout
from vidprobe.adapters import list_samples
from vidprobe.config import Config, ConfigError, load_config, with_overrides
from vidprobe.project import COMMANDS, STAMP_DIR, stamp_file
from vidprobe.yamlconfig import builtin_configs, deep_merge, find_config, key_comments, parse_overrides

WRITES = ("params.yaml", "dvc.yaml", ".gitignore", ".dvcignore")
RUN = "${paths.cache}/runs/${run.name}"
DATASET = "${paths.cache}/${dataset.name}"


def run(
    target: str | Path,
    dataset: str = "folder",
    root: str | Path | None = None,
    overrides: list[str] = (),
    force: bool = False,
) -> Config:
    target = Path(target).resolve()
    clash = [name for name in WRITES[:2] if (target / name).exists()]
    if clash and not force:
        raise ConfigError(
            f"{target} already holds {' and '.join(clash)}: choose an empty folder, or pass --force to write over them"
        )
    include = config_reference(dataset, target)
    values = parse_overrides(list(overrides))
    if root is not None:
        videos = Path(root).resolve()
        if not videos.is_dir():
            raise ConfigError(f"--root {root}: no such folder; pass the folder that holds the videos")
        values = deep_merge(values, {"dataset": {"root": relative_or_absolute(videos, target)}})
        values["dataset"].setdefault("name", re.sub(r"[^A-Za-z0-9_.-]+", "-", videos.name) or "videos")
    values = deep_merge({"paths": {"cache": "cache"}}, values)
    cfg = load_config(find_config(include, target), values=values)
    if not cfg.dataset.root:
        raise ConfigError("--root: name the folder that holds the videos (the config sets no dataset.root)")
    values = deep_merge(values, path_keys(cfg))
    cfg = load_config(find_config(include, target), values=values)
    samples = list_samples(absolute_root(cfg, target).dataset)  # a layout that cannot work fails here, not in dvc
    target.mkdir(parents=True, exist_ok=True)
    (target / "params.yaml").write_text(params_text(include, values, cfg))
    (target / "dvc.yaml").write_text(dvc_text(cfg))
    (target / ".gitignore").write_text("# DVC adds the pipeline's cached outputs here when it runs them\n/dvc_plots/\n")
    (target / ".dvcignore").write_text("__pycache__/\n*.pyc\n*.partial\n")
    how = make_dvc_project(target)
    counts = ", ".join(f"{n} {split}" for split, n in samples.groupby("split").size().items())
    print(
        f"vidprobe init: {target} ({how}) for {cfg.dataset.root}: {len(samples)} samples ({counts})\n"
        f"  params.yaml  what differs from {include}; all of it: vidprobe configs -c {target / 'params.yaml'}\n"
        f"  dvc.yaml     {' -> '.join(['stamp', *COMMANDS])}\n"
        f"next: cd {target} && dvc repro && dvc metrics show"
    )
    return cfg


def config_reference(dataset: str, target: Path) -> str:
    """How params.yaml includes the dataset's config: a built-in name as it is, a file by its path from `target`."""
    if dataset in builtin_configs() and not Path(dataset).is_file():
        return dataset
    return relative_or_absolute(find_config(dataset).resolve(), target)


def relative_or_absolute(path: Path, target: Path) -> str:
    return str(path.relative_to(target)) if path.is_relative_to(target) else str(path)


def absolute_root(cfg: Config, target: Path) -> Config:
    return with_overrides(cfg, {"dataset.root": str(target / cfg.dataset.root)})


def path_keys(cfg: Config) -> dict:
    """The keys dvc.yaml's paths are made of, spelled out in params.yaml (DVC reads them from there)."""
    return {
        "dataset": {"name": cfg.dataset.name},
        "paths": {"cache": cfg.paths.cache},
        "embed": {"feature_set": layout.video_set_name(cfg)},
        "run": {"name": cfg.run.name},
        "evaluate": {"split": cfg.evaluate.split},
    }


def params_text(include: str, values: dict[str, dict], cfg: Config) -> str:
    lines = [
        f"# A vidprobe project (vidprobe init, {date.today()}, vidprobe {vidprobe.__version__}).",
        "# Every stage in dvc.yaml runs `vidprobe <stage> -c params.yaml`. This file holds only what differs",
        f"# from {include}; the whole config, resolved: `vidprobe configs -c params.yaml`. Change a key here (or",
        "# `dvc exp run -S head.lr=0.003`) and `dvc repro` re-runs only the stages that read it. dvc.yaml's",
        "# paths are made of dataset.name, paths.cache, embed.feature_set, run.name and evaluate.split.",
        f"include: {include} # a built-in config (`vidprobe configs` lists them) or a path",
    ]
    sections = {f.name: type(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    for section in [s for s in sections if s in values]:
        keys = values[section]
        comments = key_comments(sections[section])
        lines.append(f"{section}:")
        for key, value in keys.items():
            note = f" # {comments[key]}" if comments.get(key) else ""
            lines.append(f"  {key}: {scalar(value)}{note}")
    return "\n".join(lines) + "\n"


def scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def dvc_text(cfg: Config) -> str:
    stamps = [{stamp_file(c): {"cache": False}} for c in COMMANDS]
    manifest, features = f"{DATASET}/manifest.csv", f"{DATASET}/${{embed.feature_set}}"
    index_outs = [manifest] + ([f"{DATASET}/classes.json"] if cfg.task.multilabel else [])
    evaluated = f"{RUN}/eval/${{evaluate.split}}"
    plots = []
    if cfg.task.label:
        plots.append(
            {f"{evaluated}/confusion.csv": {"cache": False, "template": "confusion", "x": "actual", "y": "predicted"}}
        )
    if cfg.task.label or cfg.task.multilabel:
        ap = f"per_class_ap-{cfg.task.multilabel}.csv" if cfg.task.multilabel else "per_class_ap.csv"
        plots.append({f"{evaluated}/{ap}": {"cache": False, "template": "bar_horizontal", "x": "ap", "y": "class"}})
    stages = {
        "stamp": {
            "cmd": f"vidprobe stamp -c params.yaml {' '.join(COMMANDS)}",
            "deps": ["params.yaml"],
            "always_changed": True,
            "outs": stamps,
        },
        "index": {
            "cmd": "vidprobe index -c params.yaml",
            "deps": [stamp_file("index"), "${dataset.root}"],
            "outs": index_outs,
        },
        "embed": {"cmd": "vidprobe embed -c params.yaml", "deps": [stamp_file("embed"), manifest], "outs": [features]},
        "train": {
            "cmd": "vidprobe train -c params.yaml",
            "deps": [stamp_file("train"), manifest, features],
            "outs": [f"{RUN}/heads.pt", f"{RUN}/predictions.csv", f"{RUN}/config.yaml"],
            "metrics": [{f"{RUN}/metrics.json": {"cache": False}}],
            "plots": [{f"{RUN}/history": {"cache": False}}],
        },
        "evaluate": {
            "cmd": "vidprobe evaluate -c params.yaml",
            "deps": [stamp_file("evaluate"), manifest, features, f"{RUN}/heads.pt"],
            "outs": [f"{evaluated}/predictions.csv"],
            "metrics": [{f"{evaluated}/metrics.json": {"cache": False}}],
            **({"plots": plots} if plots else {}),
        },
    }
    head = (
        f"# The pipeline of this vidprobe project: `dvc repro` runs it, `dvc metrics show` and `dvc plots show`\n"
        f"# read its results. `stamp` always runs first and writes {STAMP_DIR}/<stage>.yaml: what that stage reads\n"
        "# (the installed vidprobe and its code, the config keys, resolved); a stage re-runs only when its file\n"
        "# changed. Upgrading vidprobe re-runs the stages; `dvc commit -f` keeps outputs you know still hold.\n"
    )
    return head + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def make_dvc_project(target: Path) -> str:
    if (target / ".dvc").is_dir():
        return "already a DVC project"
    git = shutil.which("git")
    top = (
        subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=target, capture_output=True, text=True)
        if git
        else None
    )
    if top is not None and top.returncode == 0:
        subdir = Path(top.stdout.strip()).resolve() != target
        dvc_init(target, ["--subdir"] if subdir else [])
        return "DVC, in the git work tree " + top.stdout.strip()
    if git:
        subprocess.run([git, "init", "-q"], cwd=target, check=True)
        dvc_init(target, [])
        return "git and DVC"
    dvc_init(target, ["--no-scm"])
    return "DVC without git (git is not installed)"


def dvc_init(target: Path, flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q", *flags], cwd=target, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ConfigError(f"`dvc init {' '.join(flags)}` in {target} failed: {done.stderr.strip() or done.stdout}")
