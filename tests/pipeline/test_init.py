"""`vidprobe init`: a DVC project for one's own videos; `vidprobe stamp`: what each of its stages reads.
(tests/test_package.py runs `dvc repro` in such a project with the installed wheel.)"""

from __future__ import annotations

import pytest
import yaml
from vidprobe.cli import main
from vidprobe.config import ConfigError, load_config
from vidprobe.project import COMMANDS, READS
from vidprobe.stages import init, stamp

from tests.test_layers import dvc_stages


def test_init_writes_a_project_of_what_differs(demo_root, tmp_path, capsys):
    cfg = init.run(tmp_path / "proj", "folder", demo_root, ["backbone.name=videomae-tiny-random", "head.lr=0.003"])
    proj = tmp_path / "proj"
    assert (proj / ".dvc").is_dir() and (proj / ".gitignore").is_file() and (proj / ".dvcignore").is_file()
    assert "28 samples (8 test, 12 train, 8 val)" in capsys.readouterr().out
    text = (proj / "params.yaml").read_text()
    assert text.startswith("# A vidprobe project") and "include: folder" in text
    params = yaml.safe_load(text)
    assert params["head"] == {"lr": 0.003} and params["dataset"]["root"] == str(demo_root)
    assert params["embed"] == {"feature_set": "videomae-tiny-random"}  # named after the backbone, not the base's
    assert load_config(proj / "params.yaml").to_dict() == cfg.to_dict()
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["stamp", *COMMANDS] and stages["stamp"]["always_changed"] is True
    for command in COMMANDS:
        assert stages[command]["cmd"] == f"vidprobe {command} -c params.yaml"
        assert f".vidprobe/{command}.yaml" in stages[command]["deps"]


def test_init_refuses_what_cannot_work(demo_root, tmp_path):
    with pytest.raises(ConfigError, match="--root .*nope: no such folder"):
        init.run(tmp_path / "a", "folder", tmp_path / "nope")
    with pytest.raises(ConfigError, match="closest built-in configs: folder"):
        init.run(tmp_path / "a", "fodler", demo_root)
    with pytest.raises(ConfigError, match="no videos found"):
        init.run(tmp_path / "a", "folder", tmp_path)
    assert not (tmp_path / "a").exists()  # nothing written before the layout held
    init.run(tmp_path / "b", "folder", demo_root)
    with pytest.raises(ConfigError, match="already holds params.yaml and dvc.yaml: .* --force"):
        init.run(tmp_path / "b", "folder", demo_root)
    init.run(
        tmp_path / "b",
        "traits",
        demo_root,
        ["dataset.table=metadata.csv", "dataset.traits=[speed]", "task.traits=[speed]"],
        force=True,
    )
    assert "include: traits" in (tmp_path / "b" / "params.yaml").read_text()


def test_init_on_the_command_line_exits_2_on_a_bad_setting(demo_root, tmp_path, capsys):
    assert main(["init", str(tmp_path / "p"), "--root", str(demo_root), "head.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean head.lr?" in err and "Traceback" not in err


def test_a_stamp_changes_only_with_what_its_stage_reads(tmp_path):
    before = {p.name: p.read_text() for p in stamp.run(load_config("demo"), COMMANDS, tmp_path)}
    after = {p.name: p.read_text() for p in stamp.run(load_config("demo", ["head.lr=0.5"]), COMMANDS, tmp_path)}
    assert [n for n in before if before[n] != after[n]] == ["train.yaml", "evaluate.yaml"]
    record = yaml.safe_load(after["embed.yaml"])
    assert set(record) == {"vidprobe", "code", "config"} and set(record["config"]) == {
        "dataset",
        "sampling",
        "backbone",
        "embed",
    }
    with pytest.raises(ConfigError, match="no stage is called nope"):
        stamp.run(load_config("demo"), ["nope"], tmp_path)


def test_stamps_read_what_this_repositorys_dvc_yaml_tracks():
    """The keys a project's stamp records are the DVC params this repository's dvc.yaml lists for the stage."""
    for name, stage in dvc_stages().items():
        command = stage["cmd"].split()[1]
        if stage["cmd"] == f"vidprobe {command} -c params.yaml":
            assert stage["params"] == READS[command], name
