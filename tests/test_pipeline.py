"""End to end on the small demo: the stages called as plain functions, then the real `dvc repro`."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from vidprobe import layout
from vidprobe.cli import main
from vidprobe.stages import cache, embed, evaluate, index, train

from tests.conftest import SMALL_DEMO

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_stages_index_embed_train_evaluate(demo_cfg, capsys):
    cfg = demo_cfg("run.name=t", "head.epochs=50")
    index.run(cfg)
    result = embed.run(cfg)
    assert result["rows"] == 28 and result["failed"] == []
    info = cache.run("info", str(layout.feature_set(cfg)))
    assert info["keys"] == {
        "video/pooled": (64,),
        "video/temporal": (4, 64),
        "frame_indices": (8,),
        "frame_times": (8,),
        "num_padded": (),
        "span": (2,),
    }
    assert info["provenance"]["backbone"] == "videomae-tiny-random"
    assert cache.run("verify", str(layout.feature_set(cfg)))["rows"] == 28

    val = train.run(cfg)
    assert set(val) >= {"acc", "macro_f1", "spearman/speed", "spearman/brightness"}
    run_dir = layout.run_dir(cfg)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == pytest.approx(val)
    history = pd.read_csv(run_dir / "history" / "label.tsv", sep="\t")
    assert list(history.columns[:3]) == ["epoch", "train_loss", "val_loss"] and len(history) >= 1
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["head"]["epochs"] == 50

    test = evaluate.run(cfg)
    preds = pd.read_csv(run_dir / "eval" / "test" / "predictions.csv")
    assert len(preds) == 8 and test["acc"] == pytest.approx((preds.label == preds.pred).mean())

    # temporal attention pooling on the (N, T', D) features of the same feature set
    att = train.run(demo_cfg("run.name=att", "head.epochs=20", "head.name=attention", "head.features=video/temporal"))
    assert set(att) >= {"acc", "spearman/speed"}

    # features made with another backbone seed are refused, with the fix named
    code = main(
        [
            "train",
            f"dataset.root={cfg.dataset.root}",
            f"paths.cache={cfg.paths.cache}",
            "dataset.name=demo",
            "backbone.name=videomae-tiny-random",
            "backbone.seed=7",
        ]
    )
    assert code == 2 and "Re-run `vidprobe embed`" in capsys.readouterr().err


def dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    if shutil.which("dvc") is None or shutil.which("vidprobe") is None:
        pytest.fail("dvc and vidprobe must be on PATH (make test puts .venv/bin there)")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("pipeline", "features", "heads"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for item in SMALL_DEMO + ["head.epochs=40"]:
        key, value = item.split("=")
        section, leaf = key.split(".")
        params[section][leaf] = yaml.safe_load(value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(tmp_path, "init", "--no-scm", "-q")

    first = dvc(tmp_path, "repro")
    for stage in (
        "demo-data",
        "index",
        "embed",
        "train",
        "evaluate",
        "train-trait@speed",
        "train-trait@brightness",
        "sweep",
        "report",
    ):
        assert f"Running stage '{stage}'" in first
    report = tmp_path / "cache" / "reports" / f"{params['sweep']['name']}.html"
    assert '<section id="gallery">' in report.read_text()
    metrics = dvc(tmp_path, "metrics", "show")
    assert "acc" in metrics and "spearman/speed" in metrics

    again = dvc(tmp_path, "repro")
    assert "Running stage" not in again

    params["head"]["lr"] = 0.003
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    status = dvc(tmp_path, "status")
    assert "train" in status and "embed" not in status
    third = dvc(tmp_path, "repro")
    assert "Running stage 'train'" in third and "Running stage 'evaluate'" in third
    assert "Running stage 'sweep'" in third  # its base config changed (each trial's lr is the grid's)
    assert "Running stage 'embed'" not in third and "Running stage 'index'" not in third

    dvc(tmp_path, "plots", "show", "-o", "plots")
    assert (tmp_path / "plots" / "index.html").is_file()

    # a team shares one extraction through a DVC remote (a local directory here; S3 and others alike)
    remote = tmp_path.parent / f"{tmp_path.name}-remote"
    dvc(tmp_path, "remote", "add", "-d", "team", str(remote))
    dvc(tmp_path, "push")
    features = tmp_path / "cache" / "demo" / params["embed"]["feature_set"]
    before = sorted(p.name for p in features.iterdir())
    shutil.rmtree(features)  # as on a machine that never embedded
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    dvc(tmp_path, "pull")
    assert sorted(p.name for p in features.iterdir()) == before
    assert "Running stage" not in dvc(tmp_path, "repro")  # pulled outputs count as up to date

    # a default changed in the heads' config schema re-runs every stage that trains heads
    schema = tmp_path / "heads" / "config.py"
    schema.write_text(schema.read_text().replace("patience: int = 30", "patience: int = 31"))
    status = dvc(tmp_path, "status")
    for stage in ("train:", "evaluate:", "train-fused:", "finetune:", "sweep:"):
        assert stage in status, status
