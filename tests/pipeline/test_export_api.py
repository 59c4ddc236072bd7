"""export round trips bit for bit; the README's Python example runs on a small demo; the layouts people have."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import vidprobe
import yaml
from vidprobe.config import ConfigError, load_config
from vidprobe.stages import demo_data, embed, export, index, train

from tests.conftest import SMALL_DEMO

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "backbone": {"name": "videomae-tiny-random"},
    "sampling": {"num_frames": None, "size": None},
    "embed": {"feature_set": "tiny", "num_workers": 0},
    "index": {"num_workers": 1},
    "head": {"epochs": 20},
}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A folder laid out as after `make demo` (params.yaml, data/demo, cache/), small and with the tiny VideoMAE."""
    where = tmp_path_factory.mktemp("made")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for item in SMALL_DEMO:
        key, value = item.split("=")
        section, leaf = key.split(".")
        params[section][leaf] = yaml.safe_load(value)
    for section, values in TINY.items():
        params[section].update(values)
    (where / "params.yaml").write_text(yaml.safe_dump(params))
    before = os.getcwd()
    os.chdir(where)
    try:
        cfg = load_config("params.yaml")
        demo_data.run(cfg, cfg.dataset.root)
        index.run(cfg)
        embed.run(cfg)
        train.run(cfg)
    finally:
        os.chdir(before)
    return where


@pytest.mark.parametrize("fmt", ["npy", "parquet", "hf"])
def test_export_round_trips_bit_for_bit(demo_dir, fmt, monkeypatch):
    monkeypatch.chdir(demo_dir)
    cfg = load_config("params.yaml", [f"export.format={fmt}"])
    target = export.run(cfg)
    fs = vidprobe.feature_set(cfg)
    keys = sorted(k for k in fs.keys if k != "source_id")
    if fmt == "npy":
        for sid in fs.ids:
            for key in keys:
                stored = fs.get(key, [sid])[0]
                back = np.load(target / f"{sid}_{key.replace('/', '_')}.npy")
                assert back.dtype == stored.dtype and np.array_equal(back, stored)
        return
    if fmt == "parquet":
        frame, values = vidprobe.read_parquet(target)
        ids = list(frame.row)
        assert {"label", "split", "path", "speed"} <= set(frame.columns)
    else:
        import datasets

        saved = datasets.load_from_disk(str(target))
        table = saved.with_format("numpy")[:]  # numpy format widens integers to int64; arrow keeps int32
        ids, values = list(table["row"]), {k: table[k] for k in keys}
        assert all(str(fs.get(k, ids[:1]).dtype) in str(saved.features[k]) for k in keys)
    assert sorted(ids) == sorted(fs.ids)
    for key in keys:
        stored = fs.get(key, ids)
        if fmt == "parquet" or stored.dtype.kind == "f":
            assert values[key].dtype == stored.dtype, key
        assert np.array_equal(values[key], stored), key


def test_export_one_split_and_key_and_refuse_unknown_keys(demo_dir, monkeypatch):
    monkeypatch.chdir(demo_dir)
    target = export.run(
        load_config(
            "params.yaml",
            ["export.format=parquet", "export.split=test", "export.keys=[video/pooled]", "export.out=only-test"],
        )
    )
    frame, values = vidprobe.read_parquet(target)
    assert set(frame.split) == {"test"} and list(values) == ["video/pooled"] and target.parent.name == "only-test"
    with pytest.raises(ConfigError, match="audio/pooled"):
        export.run(load_config("params.yaml", ["export.keys=[audio/pooled]"]))


def readme_example(which: int) -> str:
    """The README's `which`-th Python example under "From Python" (0: from a folder of videos, 1: the demo's cache;
    tests/test_package.py runs the first one in a fresh environment with the wheel installed)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.findall(r"```python\n(.*?)```", section, re.S)[which]


@pytest.mark.slow
def test_the_readme_python_example_runs(demo_dir, monkeypatch):
    monkeypatch.chdir(demo_dir)
    scope: dict = {}
    exec(compile(readme_example(1), "README.md (From Python)", "exec"), scope)
    assert scope["x"].shape == (len(scope["table"]), 64)
    probs = scope["pred"].filter(like="prob/")
    assert probs.shape[1] == 4 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert list(scope["new"].status) == ["ok"]
    np.testing.assert_allclose(
        scope["new"].filter(like="prob/").to_numpy(float),
        probs[scope["pred"].sample_id == "test/left/left_000"].to_numpy(float),
        atol=1e-6,
    )


def test_features_read_by_id_and_in_chunks(demo_dir, monkeypatch):
    monkeypatch.chdir(demo_dir)
    cfg = load_config("params.yaml")
    ids = ["test/up/up_001", "train/left/left_000"]
    table = vidprobe.table(cfg, ids=ids)
    assert list(table.sample_id) == ids and list(table.label) == ["up", "left"]
    np.testing.assert_array_equal(np.stack(table["video/pooled"]), vidprobe.load_features(cfg, ids=ids))
    parts = list(vidprobe.chunks(cfg, rows=5, split="train"))
    assert [len(p) for p in parts] == [5, 5, 2] and set(np.concatenate([p.split for p in parts])) == {"train"}
    with pytest.raises(ConfigError, match="have no features"):
        vidprobe.load_features(cfg, ids=["nope"])


def test_class_folders_without_split_folders_or_without_test(demo_root, tmp_path, capsys):
    flat = tmp_path / "flat"
    for video in demo_root.glob("*/*/*.mp4"):  # <root>/<class>/<video>, no split folders
        (flat / video.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(video, flat / video.parent.name / f"{video.parent.parent.name}-{video.name}")
    base = [
        f"dataset.root={flat}",
        f"paths.cache={tmp_path / 'cache'}",
        "index.num_workers=1",
        "dataset.split_fractions=[0.6, 0.2, 0.2]",
    ]
    manifest = index.run(load_config(None, base))
    assert len(manifest) == 28 and set(manifest.split) == {"train", "val", "test"}
    assert "stable hash" in capsys.readouterr().out
    again = index.run(load_config(None, base))
    assert list(again.split) == list(manifest.split)  # the same split every time

    no_test = tmp_path / "no-test"
    shutil.copytree(demo_root / "train", no_test / "train")
    shutil.copytree(demo_root / "val", no_test / "val")
    index.run(
        load_config(None, [f"dataset.root={no_test}", f"paths.cache={tmp_path / 'cache2'}", "index.num_workers=1"])
    )
    assert "dataset.splits=[train,val]" in capsys.readouterr().out
    shutil.rmtree(no_test / "val")
    with pytest.raises(ConfigError, match=r"split 'val' is empty: .*dataset.val_fraction=0.1"):
        index.run(load_config(None, [f"dataset.root={no_test}", f"paths.cache={tmp_path / 'cache3'}"]))
