import h5py
import numpy as np
from vidprobe.cli import main
from vidprobe.features.store import ShardWriter, write_index

ATTRS = {"config_hash": "abc", "config": "x: 1\n", "provenance": {"backbone": "tiny"}}


def make_set(directory, ids=("a", "b", "c")):
    w = ShardWriter(directory, 0, 1, ATTRS)
    w.append(list(ids), {"video/pooled": np.ones((len(ids), 4), np.float32)})
    w.finish()
    write_index(directory)


def test_info_and_verify_on_a_whole_set(tmp_path, capsys):
    make_set(tmp_path)
    assert main(["cache", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 rows in 1 shard(s)" in out and "video/pooled" in out and "(N, 4)" in out and "tiny" in out
    assert main(["cache", "verify", str(tmp_path)]) == 0


def test_verify_finds_nan_and_count_mismatch(tmp_path, capsys):
    make_set(tmp_path)
    with h5py.File(tmp_path / "shard-0-of-1.h5", "a") as h5:
        h5["video/pooled"][1, 2] = np.nan
    (tmp_path / "index.json").write_text('{"shards": [{"file": "shard-0-of-1.h5", "rows": 5}]}')
    assert main(["cache", "verify", str(tmp_path)]) == 1  # a broken set is a failed run, not a usage error
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "index.json lists" in err


def test_verify_reports_an_unfinished_run(tmp_path, capsys):
    make_set(tmp_path)
    w = ShardWriter(tmp_path, 0, 1, ATTRS, commit_every=1)
    w.append(["d"], {"video/pooled": np.ones((1, 4), np.float32)})  # committed, never finished
    assert main(["cache", "verify", str(tmp_path)]) == 1  # a broken set is a failed run, not a usage error
    assert "unfinished run" in capsys.readouterr().err


def test_not_a_feature_set(tmp_path, capsys):
    assert main(["cache", "info", str(tmp_path / "nope")]) == 2
