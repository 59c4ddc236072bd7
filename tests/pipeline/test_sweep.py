import json

import pandas as pd
import pytest

from pipeline import embed, index, sweep
from pipeline.cli import main
from pipeline.config import ConfigError


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
    accs = [json.loads(open(f"{r}/metrics.json").read())["acc"] for r in runs]
    assert row["acc mean"] == pytest.approx(sum(accs) / 2)
    assert row["acc std"] == pytest.approx(pd.Series(accs).std(ddof=0))
    saved = pd.read_csv(f"{cfg.paths.cache}/runs/sweep/leaderboard.csv")
    assert list(saved.config) == list(table.config)
    assert "| lr=0.1 |" in open(f"{cfg.paths.cache}/runs/sweep/leaderboard.md").read()
    assert "baseline: sklearn logistic/ridge" in set(table.config)


def test_sweep_grid_is_validated_before_anything_runs(demo_cfg, capsys):
    with pytest.raises(ConfigError, match="did you mean head.lr"):
        sweep.plan(demo_cfg("sweep.grid={head.lrr: [0.1]}"))
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sweep.plan(demo_cfg())
    assert len(sweep.plan(demo_cfg("sweep.grid={head.lr: [1, 2, 3], head.epochs: [1, 2]}", "sweep.samples=4"))) == 4
    assert main(["sweep", "sweep.grid={head.lr: [0.1]}", "paths.cache=/nonexistent"]) == 2
    assert "vidprobe index" in capsys.readouterr().err
