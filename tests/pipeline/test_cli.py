import subprocess
import sys

import pytest
from vidprobe.cli import main

STAGES = ["demo-data", "index", "embed", "train", "evaluate", "cache"]


def test_console_script_lists_stages():
    out = subprocess.run([sys.executable, "-m", "vidprobe", "--help"], capture_output=True, text=True, check=True)
    for stage in STAGES:
        assert stage in out.stdout


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_missing_dataset_root_is_usage_error(capsys, tmp_path):
    code, err = run_cli(capsys, "index", f"dataset.root={tmp_path / 'nope'}")
    assert code == 2 and "dataset.root" in err and "nope" in err and "Traceback" not in err


def test_unset_dataset_root_is_usage_error(capsys):
    code, err = run_cli(capsys, "index")
    assert code == 2 and "dataset.root=DIR" in err


def test_empty_dataset_is_usage_error(capsys, tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    code, err = run_cli(capsys, "index", f"dataset.root={tmp_path}")
    assert code == 2 and "no videos found" in err and "<class>" in err


def test_unknown_key_is_usage_error(capsys):
    code, err = run_cli(capsys, "train", "head.learning_rate=1")
    assert code == 2 and "head.learning_rate" in err


def test_malformed_yaml_is_usage_error(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    code, err = run_cli(capsys, "index", "-c", str(bad))
    assert code == 2 and "bad.yaml" in err and "malformed YAML" in err


def test_missing_config_file_is_usage_error(capsys, tmp_path):
    code, err = run_cli(capsys, "embed", "-c", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err


def test_train_before_embed_says_what_to_run(capsys, tmp_path):
    code, err = run_cli(capsys, "train", f"paths.cache={tmp_path}")
    assert code == 2 and "vidprobe index" in err


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["transmogrify"])
    assert exc.value.code == 2


def test_version_and_configs(capsys):
    import vidprobe

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"vidprobe {vidprobe.__version__}"
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name in ("datasets/ucf101", "datasets/folder", "experiments/trait-experts", "backbones/videomae-base"):
        (line,) = [row for row in listed if row.split()[:1] == [name]]
        assert len(line.split()) > 3  # the name, its short name, a description
    assert main(["configs", "-c", "folder", "head.lr=0.25"]) == 0
    assert "lr: 0.25" in capsys.readouterr().out


def test_unknown_config_name_exits_2_naming_the_closest(capsys):
    code, err = run_cli(capsys, "index", "-c", "fodler", "dataset.root=x")
    assert code == 2 and "closest built-in configs: folder" in err and "Traceback" not in err


def test_overrides_may_follow_options(capsys, tmp_path):
    code, err = run_cli(
        capsys, "index", "-c", "folder", f"dataset.root={tmp_path / 'nope'}", "--describe", "index.num_workers=1"
    )
    assert code == 2 and "nope" in err
    assert main(["index", "--describe", "not-a-key-value"]) == 2
    assert "'not-a-key-value' is not key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:  # after DIR and an option, only key=value may follow
        main(["init", str(tmp_path), "--root", str(tmp_path), "not-a-key-value"])
    assert done.value.code == 2 and "unrecognized arguments: not-a-key-value" in capsys.readouterr().err


def test_every_key_is_documented_with_its_default_where_it_is_declared(capsys):
    assert main(["configs", "--keys"]) == 0
    rows = capsys.readouterr().out.splitlines()
    undocumented = [row for row in rows if "#  [" in row]
    assert len(rows) > 150 and not undocumented, undocumented
    by_key = {row.split(" = ")[0]: row for row in rows}
    assert by_key["head.focal_gamma"].endswith("[vidprobe.heads.losses]") and " = 2.0 " in by_key["head.focal_gamma"]
    assert by_key["head.coop_init"].endswith("[vidprobe.heads.coop]")
    assert by_key["dataset.video_dirs"].endswith("[vidprobe.adapters.tables]")
    assert main(["configs", "--keys", "nope"]) == 2
