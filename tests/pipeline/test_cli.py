import subprocess
import sys

import pytest

from pipeline.cli import main

STAGES = ["demo-data", "index", "embed", "train", "evaluate", "cache"]


def test_console_script_lists_stages():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True, check=True)
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
