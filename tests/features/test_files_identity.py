"""Atomic writes, and what makes two configs' features the same."""

import dataclasses

import pytest
from vidprobe.features.config import BackboneConfig, SamplingConfig
from vidprobe.features.files import atomic_path, write_json
from vidprobe.features.identity import CLIP_KEYS, clip_identity, config_diff, differing, feature_config, feature_hash


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = write_json(tmp_path / "metrics.json", {"acc": 0.5})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "acc": 0.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_unique_temporary_names_per_process(tmp_path):
    with atomic_path(tmp_path / "index.json", unique=True) as tmp:
        assert tmp.name.startswith("index.json.") and tmp.name.endswith(".partial") and tmp.name.count(".") == 3
        tmp.write_text("{}")
    assert (tmp_path / "index.json").read_text() == "{}"


def test_feature_hash_is_stable_across_versions():
    """The hash every stored feature set carries: the same settings must keep giving it (values from the
    code that made the sets users have)."""
    assert feature_hash(SamplingConfig(), BackboneConfig(), "float32")[0] == "41fb65fd05f6a7d3"
    other = feature_hash(SamplingConfig(views=3), BackboneConfig(name="clip", device="cuda"), "float32")[0]
    assert other == "cc6ef7338e5e83a0"


def test_where_features_are_computed_is_not_their_identity():
    base = feature_hash(SamplingConfig(), BackboneConfig(), "float32")
    assert feature_hash(SamplingConfig(), BackboneConfig(device="cuda:1", compile=True), "float32") == base
    assert feature_hash(SamplingConfig(), BackboneConfig(seed=1), "float32") != base


def test_clip_identity_is_a_projection_of_the_feature_config():
    sampling, backbone = SamplingConfig(num_frames=8, views=4, decoder="ffmpeg"), BackboneConfig(name="videomae")
    ident = clip_identity(sampling, backbone)
    assert tuple(ident) == CLIP_KEYS and ident["sampling.num_frames"] == 8 and ident["backbone.name"] == "videomae"
    assert clip_identity(dataclasses.replace(sampling, views=1, crops=3, decoder="decord"), backbone) == ident
    full = feature_config(sampling, backbone, "float16")
    assert all(ident[k] == full[k.split(".")[0]].get(k.split(".")[1]) for k in CLIP_KEYS)  # layers: only when set


def test_differences_are_named_by_dotted_key():
    assert differing({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]
    assert config_diff("a: {b: 1}\n", "a: {b: 2}\n") == ["a.b: 1 -> 2"]
