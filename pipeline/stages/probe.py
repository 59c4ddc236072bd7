"""`vidprobe probe VIDEOS [--labels TABLE]`: from a folder of videos to a leaderboard and a report, one command.

It infers the layout (vidprobe.guess), then runs the stages through the public API as a user's script would:
`index`, `embed` per backbone, a default `sweep` per backbone (linear and MLP heads over learning rates, weight
decays and two losses, 3 seeds, scikit-learn's baselines beside them), `evaluate` of the best config's runs on
the held-out split, and the report (vidprobe.report). Every step is cached and resumable as the stage is: a second
probe after adding videos embeds only the new ones. The sweep's name carries a fingerprint of the samples it
trains on, so heads trained before videos were added are never mistaken for finished trials.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
from pathlib import Path

import pandas as pd
import vidprobe.api as api
from vidprobe import config as configs
from vidprobe import layout
from vidprobe.artifacts import writing
from vidprobe.checks import check_sweep
from vidprobe.errors import ConfigError, RunFailed
from vidprobe.features.backbones import BACKBONES, build_backbone
from vidprobe.features.files import write_json, write_table, write_text
from vidprobe.guess import Inferred, infer
from vidprobe.heads.metrics import lower_is_better
from vidprobe.heads.sweep import to_markdown
from vidprobe.report import best_of, write_report
from vidprobe.yamlconfig import builtin_configs, deep_merge, nest, parse_overrides, read_yaml


def default_grid(inferred: Inferred) -> dict[str, list]:
    return {
        "head.name": ["linear", "mlp"],
        "head.lr": [1e-3, 1e-2],
        "head.weight_decay": [1e-4, 1e-2],
        inferred.loss_key: list(inferred.losses),
    }


def backbone_values(spec: str | None) -> dict:
    """A backbone given by `--backbone`: a built-in backbone config (videomae-tiny-random), a family of the
    registry (videomae, clip, ...), else a hub id or local folder loaded by `auto`."""
    if spec is None:
        return {}
    named = builtin_configs()
    if f"backbones/{spec}" in named:
        return read_yaml(named[f"backbones/{spec}"])[0]
    if spec in BACKBONES:
        return {"backbone": {"name": spec}}
    tag = Path(spec.rstrip("/")).name or "model"
    return {"backbone": {"name": "auto", "model": spec}, "embed": {"feature_set": tag}}


def config_for(inferred: Inferred, backbone: str | None, config: str | None, overrides: list[str]) -> configs.Config:
    values = deep_merge(deep_merge(nest(inferred.overrides), backbone_values(backbone)), parse_overrides(overrides))
    cfg = configs.load_config(config, values=values)
    if not cfg.sweep.grid:
        cfg = api.load_config(cfg, sweep={"grid": default_grid(inferred)})
    check_sweep(cfg)
    return cfg


def data_tag(cfg: configs.Config) -> str:
    """A fingerprint of the samples heads train and are chosen on (their ids and splits)."""
    rows = api.samples(cfg)
    rows = rows[rows.split.isin(["train", "val"])]
    text = "\n".join(f"{i}\t{s}" for i, s in zip(rows.index, rows.split))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def run(
    videos: str | Path,
    labels: str | Path | None = None,
    backbones: list[str] | None = None,
    config: str | None = None,
    overrides: list[str] = (),
) -> dict:
    inferred = infer(Path(videos), Path(labels) if labels else None)
    for line in inferred.lines:
        print(line)
    cfgs = [config_for(inferred, b, config, list(overrides)) for b in (backbones or [None])]
    names = [layout.video_set_name(c) for c in cfgs]
    if len(set(names)) < len(names):
        raise ConfigError(f"--backbone: two backbones share a feature set name ({names}); set embed.feature_set")
    for c in cfgs:  # a backbone that cannot be loaded stops the probe here, before anything is written
        build_backbone(c.backbone)
    first = cfgs[0]
    print(f"probe: writing under {Path(first.paths.cache).resolve()}")
    manifest = api.index(first)
    if not (manifest.status == "ok").any():
        raise RunFailed(f"no readable video among {len(manifest)}; see {layout.manifest(first)}")
    out = layout.runs_dir(first) / f"probe-{first.dataset.name}"
    boards, trained = [], []
    for cfg, name in zip(cfgs, names):
        api.embed(cfg)
        cfg = api.load_config(cfg, sweep={"name": f"probe-{first.dataset.name}-{name}-{data_tag(cfg)}"})
        board = api.sweep(cfg)
        board.insert(1, "backbone", name)
        boards.append(board)
        trained.append(cfg)
    metric = first.sweep.metric
    board = pd.concat(boards, ignore_index=True)
    board = board.sort_values(f"{metric} mean", ascending=lower_is_better(metric), na_position="last")
    board = board.reset_index(drop=True)
    board["runs"] = board.runs.fillna("").map(lambda s: "; ".join(str(Path(r).resolve()) for r in s.split("; ") if r))
    best = best_of(board, metric, out)
    cfg = trained[names.index(best["backbone"])]
    best.update(evaluate_best(cfg, best, metric))
    summary = {
        "videos": str(Path(videos).resolve()),
        "labels": str(Path(labels).resolve()) if labels else None,
        "inferred": inferred.lines,
        "metric": metric,
        "backbones": names,
        "best": best,
    }
    shown = board if len(names) > 1 else board.drop(columns="backbone")
    out.mkdir(parents=True, exist_ok=True)
    with writing(first, out, f"probe of {videos}"):
        write_table(out / "leaderboard.csv", board)
        write_text(out / "leaderboard.md", to_markdown(shown, metric))
        write_json(out / "sweep.json", {"grid": first.sweep.grid, "seeds": first.sweep.seeds, "metric": metric})
        write_json(out / "probe.json", summary)
        report = write_report(out)
    print(to_markdown(shown.head(10), metric))
    scored = best.get("test") or {}
    if metric in scored:
        spread = best["test_over_seeds"]
        print(
            f"best: {best['backbone']} | {best['config']} ({best['run']}); test {metric} {scored[metric]:.4f} "
            f"(seeds: {spread['mean']:.4f} ± {spread['std']:.4f})"
        )
    print(f"leaderboard: {out / 'leaderboard.csv'}\nreport: {report}")
    return summary


def evaluate_best(cfg: configs.Config, best: dict, metric: str) -> dict:
    """Each seed of the best configuration on test (when there is a test split): the best seed's metrics and
    the spread over seeds."""
    if not (api.samples(cfg).split == "test").any():
        return {"test": None, "test_over_seeds": None}
    with contextlib.redirect_stdout(io.StringIO()):  # the best seed's test metrics are printed below
        scored = {r: api.evaluate(str(Path(r) / "config.yaml"), evaluate={"split": "test"}) for r in best["runs"]}
    values = pd.Series([m.get(metric, math.nan) for m in scored.values()])
    return {
        "test": scored[best["run"]],
        "test_over_seeds": {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "seeds": len(values)},
    }
