from pathlib import Path

import pytest
from vidprobe.config import Config, ConfigError, deep_merge, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_deep_merge_keeps_nested_keys():
    base = {"head": {"lr": 1.0, "epochs": 5}, "paths": {"cache": "a"}}
    merged = deep_merge(base, {"head": {"lr": 2.0}})
    assert merged == {"head": {"lr": 2.0, "epochs": 5}, "paths": {"cache": "a"}}
    assert base["head"]["lr"] == 1.0  # inputs untouched


def test_overrides_are_dotted_and_typed():
    assert parse_overrides(["head.lr=3e-4", "task.traits=[a, b]", "dataset.root=/x"]) == {
        "head": {"lr": "3e-4"},
        "task": {"traits": ["a", "b"]},
        "dataset": {"root": "/x"},
    }
    cfg = load_config(None, ["head.lr=3e-4", "head.epochs=7", "sampling.num_frames=null"])
    assert cfg.head.lr == pytest.approx(3e-4) and isinstance(cfg.head.lr, float)
    assert cfg.head.epochs == 7 and cfg.sampling.num_frames is None


def test_include_then_file_then_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("head: {lr: 0.5, epochs: 3}\ndataset: {name: base}\n")
    (tmp_path / "exp.yaml").write_text("include: base.yaml\nhead: {lr: 0.1}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["head.epochs=9"])
    assert (cfg.head.lr, cfg.head.epochs, cfg.dataset.name) == (0.1, 9, "base")


def test_unknown_key_names_key_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["head.lrr=0.1"])
    assert "'head.lrr'" in str(err.value) and "did you mean head.lr?" in str(err.value)


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("head: {epochs: many, lrr: 1}\ndatset: {root: x}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "head.epochs" in msg and "'head.lrr'" in msg and "did you mean dataset?" in msg


def test_each_problem_names_the_file_it_came_from(tmp_path):
    (tmp_path / "base.yaml").write_text("head: {epochs: many}\n")
    (tmp_path / "exp.yaml").write_text("include: base.yaml\nhead: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "exp.yaml", ["sampling.views=two"])
    lines = str(err.value).splitlines()[1:]
    assert any(str(tmp_path / "base.yaml") in line and "head.epochs" in line for line in lines)
    assert any(str(tmp_path / "exp.yaml") in line and "'head.lrr'" in line for line in lines)
    assert any("command line" in line and "sampling.views" in line for line in lines)


def test_malformed_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("head: {lr: 0.1\n")
    with pytest.raises(ConfigError, match="broken.yaml: malformed YAML"):
        load_config(path)


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("configs/**/*.yaml")) + [ROOT / "params.yaml"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_shipped_yaml_loads(path):
    assert isinstance(load_config(path), Config)


def test_built_in_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_config("ucf101").dataset.adapter == "ucf101"
    assert load_config("datasets/folder.yaml").dataset.adapter == "folder"
    experts = load_config("experiments/trait-experts", ["head.lr=0.1"])
    assert (experts.sweep.name, experts.dataset.name, experts.head.lr) == ("trait-experts", "demo", 0.1)
    (tmp_path / "mine.yaml").write_text("include: [folder, videomae-tiny-random]\ndataset: {name: mine}\n")
    mine = load_config("mine.yaml")
    assert (mine.dataset.adapter, mine.backbone.name, mine.dataset.name) == ("folder", "videomae-tiny-random", "mine")
    (tmp_path / "folder").write_text("dataset: {name: a-local-file-wins}\n")
    assert load_config("folder").dataset.name == "a-local-file-wins"


def test_an_unknown_config_name_names_the_closest_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no built-in config is named 'ucf110'; closest built-in configs: ucf101"):
        load_config("ucf110")
    (tmp_path / "exp.yaml").write_text("include: fodler\n")
    with pytest.raises(ConfigError, match="closest built-in configs: folder"):
        load_config("exp.yaml")


def test_the_demo_config_is_params_yaml():
    """params.yaml spells the demo out key by key for dvc.yaml's params; `-c demo` (and the experiments that
    include it) must be the same config."""
    assert load_config("demo").to_dict() == load_config(ROOT / "params.yaml").to_dict()


def test_a_sweep_grid_is_replaced_whole_not_merged(tmp_path):
    (tmp_path / "exp.yaml").write_text("include: demo\nsweep:\n  grid:\n    head.lr: [0.1, 0.01]\n")
    assert load_config("demo").sweep.grid["head.name"] == ["linear", "mlp"]  # the demo's own grid
    assert load_config(tmp_path / "exp.yaml").sweep.grid == {"head.lr": [0.1, 0.01]}
    over = load_config("demo", ["sweep.grid={head.weight_decay: [0, 0.1]}"])
    assert over.sweep.grid == {"head.weight_decay": [0, 0.1]} and over.sweep.name == "demo-sweep"
    assert load_config("demo", ["head.lr=0.5"]).head.lr == 0.5  # other sections still merge key by key
