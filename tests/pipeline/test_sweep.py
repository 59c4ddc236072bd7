import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from vidprobe.cli import main
from vidprobe.config import ConfigError, with_overrides
from vidprobe.stages import embed, index, sweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sweep_runs_every_config_and_seed_into_a_leaderboard(demo_cfg):
    cfg = demo_cfg("sweep.grid={head.lr: [0.1, 0.001]}", "sweep.seeds=[0, 1]", "sweep.n_jobs=2", "head.epochs=20")
    index.run(cfg)
    embed.run(cfg)
    table = sweep.run(cfg)
    assert list(table.config)[-1] != "" and len(table) == 3  # two configs and the sklearn baseline
    assert table["acc mean"].is_monotonic_decreasing
    row = table[table.config == "lr=0.1"].iloc[0]
    runs = row.runs.split("; ")
    assert len(runs) == 2 and row.seeds == 2
    accs = [json.loads(Path(f"{r}/metrics.json").read_text())["acc"] for r in runs]
    assert row["acc mean"] == pytest.approx(sum(accs) / 2)
    assert row["acc std"] == pytest.approx(pd.Series(accs).std(ddof=0))
    saved = pd.read_csv(f"{cfg.paths.cache}/runs/sweep/leaderboard.csv")
    assert list(saved.config) == list(table.config)
    assert "| lr=0.1 |" in Path(f"{cfg.paths.cache}/runs/sweep/leaderboard.md").read_text()
    assert "baseline: sklearn logistic/ridge" in set(table.config)


def test_sweep_grid_is_validated_before_anything_runs(demo_cfg, capsys):
    with pytest.raises(ConfigError, match="did you mean head.lr"):  # every point, when the config loads
        demo_cfg("sweep.grid={head.lrr: [0.1]}")
    with pytest.raises(ConfigError, match=r"sweep.grid point 2: head.loss: unknown class loss 'nope'"):
        demo_cfg("sweep.grid={head.loss: [ce, nope]}")
    with pytest.raises(ConfigError, match=r"sweep.metric: 'mAP' is not measured"):  # when the sweep starts
        sweep.combos_of(demo_cfg("sweep.grid={head.lr: [0.1]}", "sweep.metric=mAP"))
    demo_cfg("sweep.grid={head.lr: [0.1]}", "task.label=null")  # a config with a sweep may serve other tasks
    with pytest.raises(ConfigError, match=r"sweep.grid point 1: task: nothing to train"):
        demo_cfg("sweep.grid={task.traits: [[]]}", "task.label=null")
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sweep.combos_of(demo_cfg())
    assert (
        len(sweep.combos_of(demo_cfg("sweep.grid={head.lr: [1, 2, 3], head.epochs: [1, 2]}", "sweep.samples=4"))) == 4
    )
    assert main(["sweep", "sweep.grid={head.lr: [0.1]}", "paths.cache=/nonexistent"]) == 2
    assert "vidprobe index" in capsys.readouterr().err


def test_batched_heads_give_the_runs_one_at_a_time_would(demo_cfg):
    base = [
        "sweep.grid={head.lr: [0.1, 0.01, 0.001], head.weight_decay: [0, 0.01]}",
        "sweep.seeds=[0, 1]",
        "head.epochs=25",
        "head.patience=5",
        "task.traits=[]",
        "sweep.baselines=false",
    ]
    cfg = demo_cfg(*base, "sweep.name=batched", "sweep.n_jobs=2")
    index.run(cfg)
    embed.run(cfg)
    assert len(sweep.batches(cfg, sweep.combos_of(cfg), 2)) == 2  # 6 configs x 2 seeds in 2 jobs
    batched = sweep.run(cfg).set_index("config")
    single = sweep.run(demo_cfg(*base, "sweep.name=single", "sweep.n_jobs=1", "sweep.batch=false")).set_index("config")
    assert len(sweep.batches(demo_cfg(*base, "sweep.batch=false"), sweep.combos_of(cfg), 2)) == 12
    for col in ("acc mean", "acc std", "macro_f1 mean"):
        pd.testing.assert_series_equal(batched[col].sort_index(), single[col].sort_index(), atol=1e-6)
    for run in batched.runs.str.split("; ").sum():
        assert {"heads.pt", "metrics.json", "config.yaml", "train.log"} <= {
            p.name for p in __import__("pathlib").Path(run).iterdir()
        }


def test_trait_heads_of_every_kind_train_as_one_batch_each_in_its_own_run(demo_cfg):
    base = [
        "sweep.grid={head.lr: [1e6, 0.01], variant: [{name: lin-mse, head.name: linear, head.regression_loss: mse},"
        " {name: mlp-ccc, head.name: mlp, head.regression_loss: ccc, head.dropout: 0.3}]}",
        "sweep.seeds=[0]",
        "task.label=null",
        "head.epochs=6",
        "head.patience=3",
        "sweep.baselines=false",
        "sweep.metric=spearman/mean",
    ]
    cfg = demo_cfg(*base, "sweep.name=batched", "sweep.n_jobs=1")
    index.run(cfg)
    embed.run(cfg)
    combos = sweep.combos_of(cfg)
    assert len(sweep.batches(cfg, combos, 1)) == 1  # 4 configs: linear and MLP, MSE and CCC, in one pass
    assert len(sweep.batches(demo_cfg(*base, "task.label=label"), combos, 1)) == 4  # class heads: lr / wd only
    batched = sweep.run(cfg).set_index("config")
    single = sweep.run(demo_cfg(*base, "sweep.name=single", "sweep.n_jobs=1", "sweep.batch=false")).set_index("config")
    pd.testing.assert_series_equal(
        batched["spearman/mean mean"].sort_index(), single["spearman/mean mean"].sort_index(), atol=1e-6
    )
    assert list(batched.diverged.sort_index()) == list(single.diverged.sort_index())
    for name, row in batched.iterrows():
        run = Path(row.runs)
        assert {"heads.pt", "metrics.json", "config.yaml", "train.log", "history"} <= {p.name for p in run.iterdir()}
        saved = yaml.safe_load((run / "config.yaml").read_text())
        lr, variant = name.split(",")
        assert saved["head"]["lr"] == float(lr.split("=")[1]) and saved["run"]["name"] == f"batched/{name}/seed0"
        assert saved["head"]["name"] == ("mlp" if "mlp" in variant else "linear")
        assert saved["head"]["regression_loss"] == ("ccc" if "ccc" in variant else "mse")


def test_grid_alternatives_are_named_sets_of_overrides(demo_cfg):
    cfg = demo_cfg(
        "sweep.grid={modality: [{name: video}, {name: audio, head.features: 'w:audio/pooled', head.lr: 0.1}],"
        " head.weight_decay: [0, 0.01]}"
    )
    combos = sweep.combos_of(cfg)
    assert [sweep.trial_name(c) for c in combos] == [
        "modality=video,weight_decay=0",
        "modality=video,weight_decay=0.01",
        "modality=audio,weight_decay=0",
        "modality=audio,weight_decay=0.01",
    ]
    assert sweep.overrides(combos[3]) == {"head.features": "w:audio/pooled", "head.lr": 0.1, "head.weight_decay": 0.01}
    with pytest.raises(ConfigError, match="head.lrr"):
        demo_cfg("sweep.grid={modality: [{head.lrr: 1}]}")


def test_lr_follows_the_batch_size_by_the_configured_rule(demo_cfg):
    base = demo_cfg("head.lr=0.01", "sweep.base_batch_size=128")
    for rule, bs, lr in (("linear", 32, 0.0025), ("sqrt", 512, 0.02), ("none", 512, 0.01)):
        cfg = with_overrides(base, {"sweep.lr_scaling": rule, "head.batch_size": bs})
        assert sweep.scale_lr(cfg).head.lr == pytest.approx(lr)


def test_long_tail_recipe_on_the_demos_multilabel_table(demo_root, tmp_path):
    from pathlib import Path

    from vidprobe.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(
        root / "configs/experiments/long-tail.yaml",
        [
            f"dataset.root={demo_root}",
            f"paths.cache={tmp_path}",
            "backbone.name=videomae-tiny-random",
            "sampling.num_frames=null",
            "sampling.size=null",
            "embed.feature_set=tiny",
            "embed.num_workers=0",
            "sweep.seeds=[0]",
            "head.epochs=20",
            "dataset.segment_cutoffs=[2, 1]",
        ],
    )
    index.run(cfg)
    embed.run(cfg)
    table = sweep.run(cfg).set_index("config")
    assert set(table.index) == {f"loss={n}" for n in ("bce", "focal", "eql", "ldam-drw", "weight-balancing")}
    assert {"mAP mean", "mAP_head mean", "mAP_tail mean"} <= set(table.columns)
    saved = yaml.safe_load((Path(table.loc["loss=weight-balancing", "runs"]) / "config.yaml").read_text())
    assert saved["head"]["max_norm"] == 1.0 and saved["head"]["weight_decay"] == 0.005
    history = pd.read_csv(Path(table.loc["loss=weight-balancing", "runs"]) / "history" / "multilabel.tsv", sep="\t")
    assert (history.stage == 2).any()  # the class-balanced, classifier-only second stage ran


@pytest.mark.slow
def test_a_killed_sweep_trains_only_the_unfinished_trials_again(demo_root, tmp_path, capsys):
    common = [
        f"dataset.root={demo_root}",
        f"paths.cache={tmp_path}",
        "dataset.name=demo",
        "index.num_workers=1",
        "embed.num_workers=0",
        "backbone.name=videomae-tiny-random",
        "task.traits=[]",
        "sweep.grid={head.lr: [0.1, 0.03, 0.01, 0.003]}",
        "sweep.seeds=[0]",
        "sweep.n_jobs=1",
        "sweep.batch=false",
        "sweep.baselines=false",
        "head.epochs=300",
        "head.patience=300",
    ]
    assert main(["index", *common]) == 0 and main(["embed", *common]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidprobe", "sweep", *common],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "runs" / "sweep"
    deadline = time.time() + 300
    while len(list(runs.glob("*/seed0/metrics.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.parent.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/seed0/metrics.json")}
    assert 2 <= len(first) < 4, first  # killed midway
    capsys.readouterr()
    assert main(["sweep", *common]) == 0
    assert f"{len(first)} already finished; {4 - len(first)} to train" in capsys.readouterr().out
    after = {p.parent.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/seed0/metrics.json")}
    assert len(after) == 4 and all(after[name] == mtime for name, mtime in first.items())  # not trained again
    table = pd.read_csv(runs / "leaderboard.csv")
    assert sorted(table.config) == ["lr=0.003", "lr=0.01", "lr=0.03", "lr=0.1"] and table.diverged.sum() == 0
    capsys.readouterr()
    assert main(["sweep", *common[:-2], "head.epochs=299", "head.patience=300"]) == 0  # another base config
    assert "already finished" not in capsys.readouterr().out


def test_the_leaderboard_says_which_configs_diverged():
    from vidprobe.heads.sweep import leaderboard, to_markdown

    rows = [
        {"config": "lr=0.1", "seed": 0, "run_dir": "a", "acc": float("nan")},
        {"config": "lr=0.1", "seed": 1, "run_dir": "b", "acc": 0.9},
        {"config": "lr=1", "seed": 0, "run_dir": "c", "acc": float("nan")},
        {"config": "lr=0.01", "seed": 0, "run_dir": "d", "acc": 0.5},
    ]
    table = leaderboard(rows, "acc")
    assert list(table.config) == ["lr=0.1", "lr=0.01", "lr=1"]  # every seed of lr=1 diverged: last
    assert dict(zip(table.config, table.diverged)) == {"lr=0.1": 1, "lr=0.01": 0, "lr=1": 1}
    assert "| seeds | diverged |" in to_markdown(table, "acc") and "| lr=1 | nan ± nan | 1 | 1 |" in to_markdown(
        table, "acc"
    )


@pytest.mark.slow
def test_a_dask_cluster_gives_the_leaderboard_loky_gives(demo_cfg):
    from distributed import LocalCluster

    cfg = demo_cfg(
        "sweep.grid={head.lr: [0.1, 0.01], head.weight_decay: [0, 0.01], head.name: [linear, mlp]}",
        "sweep.seeds=[0, 1]",
        "head.epochs=15",
        "sweep.n_jobs=2",
    )
    index.run(cfg)
    embed.run(cfg)
    metrics = ["acc mean", "acc std", "macro_f1 mean", "spearman/mean mean", "seeds", "diverged"]
    loky = sweep.run(with_overrides(cfg, {"sweep.name": "loky"}))
    local = sweep.run(with_overrides(cfg, {"sweep.name": "dask-local", "sweep.backend": "dask"}))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = sweep.run(
            with_overrides(
                cfg, {"sweep.name": "dask", "sweep.backend": "dask", "sweep.address": cluster.scheduler_address}
            )
        )
    for table in (local, remote):
        pd.testing.assert_frame_equal(table[["config", *metrics]], loky[["config", *metrics]])
    assert all("/runs/dask/" in r for r in remote.runs if r)  # each worker wrote its runs where the sweep asked
    if importlib.util.find_spec("ray") is None:  # an optional extra (vidprobe[ray], ~80 MB): not in make setup
        return
    ray = sweep.run(with_overrides(cfg, {"sweep.name": "ray", "sweep.backend": "ray"}))
    pd.testing.assert_frame_equal(ray[["config", *metrics]], loky[["config", *metrics]])


def test_a_backend_that_is_not_installed_or_not_there_is_exit_2(demo_cfg, capsys):
    base = ["sweep", "sweep.grid={head.lr: [0.1]}", f"paths.cache={demo_cfg().paths.cache}"]
    if importlib.util.find_spec("ray") is None:
        assert main([*base, "sweep.backend=ray"]) == 2
        assert "pip install 'vidprobe[ray]'" in capsys.readouterr().err
    assert main([*base, "sweep.backend=spark"]) == 2
    assert "sweep.backend: 'spark' is not one of" in capsys.readouterr().err
