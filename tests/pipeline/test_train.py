"""train on a hand-made feature set: bad features, unseen classes, every loss and head."""

import shutil

import numpy as np
import pandas as pd
import pytest
from vidprobe import layout
from vidprobe.config import ConfigError, load_config, with_overrides
from vidprobe.features.identity import feature_hash
from vidprobe.features.store import FeatureSet, ShardWriter
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.runs import load_run
from vidprobe.stages import evaluate, train


def make(tmp_path, labels_by_split, *overrides, nan_id=None):
    cfg = load_config(
        None, [f"paths.cache={tmp_path}", "dataset.name=t", "task.traits=[score]", "head.epochs=30", *overrides]
    )
    rows, rng = [], np.random.default_rng(0)
    for split, labels in labels_by_split.items():
        rows += [
            {
                "sample_id": f"{split}/{i}",
                "path": f"{split}/{i}.mp4",
                "split": split,
                "label": lab,
                "score": float(i % 5),
                "status": "ok",
            }
            for i, lab in enumerate(labels)
        ]
    manifest = pd.DataFrame(rows)
    layout.manifest(cfg).parent.mkdir(parents=True)
    manifest.to_csv(layout.manifest(cfg), index=False)
    centres = {c: rng.normal(size=8) * 3 for c in "abc"}
    x = np.stack([centres[r["label"]] + rng.normal(size=8) for r in rows]).astype(np.float32)
    x[:, :2] += 3 * manifest.score.to_numpy()[:, None]  # the trait is readable from the features
    if nan_id is not None:
        x[list(manifest.sample_id).index(nan_id), 3] = np.nan
    h, text = feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype)
    w = ShardWriter(layout.feature_set(cfg), 0, 1, {"config_hash": h, "config": text})
    w.append(list(manifest.sample_id), {"video/pooled": x})
    w.finish()
    return cfg


SPLITS = {"train": list("abc" * 10), "val": list("abc" * 3), "test": list("abc" * 3)}


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["head.name=mlp", "head.loss=focal", "head.regression_loss=ccc"],
        ["head.monitor=acc", "task.traits=[]", "head.class_weights=balanced"],
        [
            "head.loss=ce",
            "head.class_weights=effective",
            "head.label_smoothing=0.1",
            "head.regression_loss=huber",
            "head.schedule=constant",
            "head.warmup_epochs=3",
            "task.traits=[]",
        ],
    ],
)
def test_heads_and_losses_learn(tmp_path, overrides):
    cfg = make(tmp_path, SPLITS, *overrides)
    metrics = train.run(cfg)
    assert metrics["acc"] > 0.8
    if cfg.task.traits:
        assert metrics["spearman/score"] > 0.5 and "ccc/score" in metrics
    assert evaluate.run(cfg)["acc"] > 0.8


def test_nan_features_name_the_samples(tmp_path):
    cfg = make(tmp_path, SPLITS, nan_id="train/4")
    with pytest.raises(HeadConfigError, match=r"NaN or inf .*'train/4'"):
        train.run(cfg)


def test_class_absent_from_train_is_a_warning(tmp_path, capsys):
    cfg = make(tmp_path, {"train": list("ab" * 10), "val": list("abc" * 3), "test": list("abc" * 3)})
    metrics = train.run(cfg)
    assert "absent from train" in capsys.readouterr().out
    assert metrics["acc"] <= 2 / 3 + 1e-9  # the 'c' samples count as wrong
    assert evaluate.run(cfg)["acc"] <= 2 / 3 + 1e-9
    assert "were not seen in training" in capsys.readouterr().out


def test_few_shot_and_long_tail_options(tmp_path):
    cfg = make(
        tmp_path,
        SPLITS,
        "head.k_train=2",
        "head.k_val=1",
        "head.sampler=balanced",
        "head.loss=ldam",
        "head.drw_epoch=10",
        "task.traits=[]",
    )
    train.run(cfg)
    preds = pd.read_csv(layout.run_dir(cfg) / "predictions.csv")
    assert len(preds) == 3  # one validation sample per class
    log = (layout.run_dir(cfg) / "history" / "label.tsv").read_text()
    assert log.count("\n") > 1
    again = make(tmp_path / "again", SPLITS, "head.k_train=2", "head.k_val=1", "task.traits=[]")
    train.run(again)
    assert list(pd.read_csv(layout.run_dir(again) / "predictions.csv").sample_id) == list(preds.sample_id)  # same draw


def test_attention_head_on_sequence_features(tmp_path):
    cfg = make(tmp_path, SPLITS, "task.traits=[]")
    seq = make(tmp_path / "seq", SPLITS, "task.traits=[]", "head.name=attention")
    with pytest.raises(HeadConfigError, match="needs \\(N, T, D\\) features"):
        train.run(seq)  # the hand-made set only has pooled features
    assert train.run(cfg)["acc"] > 0.8


def test_per_target_heads_use_every_known_value(tmp_path):
    cfg = make(
        tmp_path, SPLITS, "task.traits=[score, other]", "task.mode=per_target", "task.n_jobs=2", "task.label=null"
    )
    manifest = pd.read_csv(layout.manifest(cfg))
    manifest["other"] = manifest.score * 2.0
    manifest.loc[manifest.sample_id.isin(["train/0", "train/1", "val/2"]), "score"] = np.nan  # masked, not dropped
    manifest.to_csv(layout.manifest(cfg), index=False)
    a = train.run(cfg)
    assert a["spearman/score"] > 0.5 and a["spearman/other"] > 0.5
    assert (layout.run_dir(cfg) / "history" / "trait-score.tsv").is_file()
    b = train.run(cfg)
    assert a == b  # threads, same numbers
    joint = train.run(make(tmp_path / "j", SPLITS, "task.traits=[score]", "task.label=null"))
    assert "spearman/score" in joint


def write_set(cfg, name, ids, features: dict, config=None):
    """Another feature set of the same dataset (e.g. audio, class prompts) in the cache."""
    h, text = (
        feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype)
        if config is None
        else (config, f"made_by: {config}")
    )
    w = ShardWriter(layout.feature_set(cfg, name), 0, 1, {"config_hash": h, "config": text})
    w.append(list(ids), features)
    w.finish()


def test_one_vs_rest_heads_per_class(tmp_path):
    cfg = make(tmp_path, SPLITS, "task.mode=per_target", "task.traits=[]", "task.n_jobs=2")
    metrics = train.run(cfg)
    assert metrics["acc"] > 0.8
    table = pd.read_csv(layout.run_dir(cfg) / "per_class_ap.csv")
    assert list(table["class"]) == list("abc") and (table.ap > 0.8).all() and list(table.positives) == [3, 3, 3]
    bundle = load_run(layout.run_dir(cfg))
    assert bundle.one_vs_rest and bundle.label_head["heads.2.weight"].shape == (1, 8)  # one binary head each
    assert evaluate.run(cfg)["acc"] > 0.8
    assert train.run(cfg) == metrics  # threads, same numbers


@pytest.mark.parametrize("fusion", ["concat", "late", "gated"])
def test_fusion_reads_the_informative_modality_and_respects_masks(tmp_path, fusion):
    splits = {"train": list("abc" * 20), "val": list("abc" * 10), "test": list("abc" * 10)}
    cfg = make(
        tmp_path, splits, f"head.fusion={fusion}", "head.fuse=[aud:audio/pooled]", "head.lr=0.03", "head.epochs=60"
    )
    manifest = pd.read_csv(layout.manifest(cfg))
    rng = np.random.default_rng(1)
    write_set(
        cfg, "noise", manifest.sample_id, {"video/pooled": rng.normal(size=(len(manifest), 8)).astype(np.float32)}
    )
    centres = {c: rng.normal(size=4) * 3 for c in "abc"}
    audio = np.stack([centres[c] + rng.normal(size=4) for c in manifest.label]).astype(np.float32)
    present = np.ones(len(manifest), dtype=bool)
    present[::7] = False  # e.g. no audio track: whatever is stored there must not count
    absent = {"train/1", "val/4"}  # not in the audio set at all
    keep = ~manifest.sample_id.isin(absent).to_numpy()

    def write_audio(garbage: float):
        values = audio.copy()
        values[~present] = garbage
        shutil.rmtree(layout.feature_set(cfg, "aud"), ignore_errors=True)
        write_set(
            cfg,
            "aud",
            manifest.sample_id[keep],
            {"audio/pooled": values[keep], "audio/present": present[keep]},
            config="whisper",
        )

    cfg = with_overrides(cfg, {"embed.feature_set": "noise"})
    alone = train.run(with_overrides(cfg, {"head.fuse": [], "run.name": "alone"}))
    write_audio(0.0)
    fused = train.run(cfg)
    assert alone["acc"] < 0.5 and fused["acc"] > 0.7, (alone, fused)  # ~15% of rows have no audio
    first = pd.read_csv(layout.run_dir(cfg) / "predictions.csv")
    write_audio(1e6)  # other values where the mask says "missing": identical heads and predictions
    assert train.run(cfg) == fused
    pd.testing.assert_frame_equal(pd.read_csv(layout.run_dir(cfg) / "predictions.csv"), first)
    assert evaluate.run(cfg)["acc"] > 0.6
    write_set(cfg, "aud2", manifest.sample_id, {"audio/pooled": audio}, config="changed")
    shutil.rmtree(layout.feature_set(cfg, "aud"))
    (layout.feature_set(cfg, "aud2")).rename(layout.feature_set(cfg, "aud"))
    with pytest.raises(HeadConfigError, match="config hash changed"):
        evaluate.run(cfg)  # the fused set was rebuilt with another config since training


def test_zero_shot_and_prompt_initialised_heads(tmp_path):
    cfg = make(tmp_path, SPLITS, "task.traits=[]", "head.name=zero-shot", "head.prompts=prompts:text/pooled")
    with pytest.raises(ConfigError, match="no feature shards"):
        train.run(cfg)
    fs = FeatureSet(layout.feature_set(cfg))
    manifest = pd.read_csv(layout.manifest(cfg))
    train_rows = manifest[manifest.split == "train"]
    x = fs.get("video/pooled", train_rows.sample_id)
    centres = np.stack([x[(train_rows.label == c).to_numpy()].mean(0) for c in "ab"])  # class 'c' has no prompt yet
    write_set(cfg, "prompts", ["a", "b"], {"text/pooled": centres}, config="clip-text")
    with pytest.raises(HeadConfigError, match="no prompt for 1 classes, e.g. \\['c'\\]"):
        train.run(cfg)
    shutil.rmtree(layout.feature_set(cfg, "prompts"))
    centres = np.stack([x[(train_rows.label == c).to_numpy()].mean(0) for c in "abc"])
    write_set(cfg, "prompts", list("abc"), {"text/pooled": centres}, config="clip-text")
    zero = train.run(cfg)
    assert zero["acc"] > 0.8  # no training: cosine similarity to the class "prompts"
    history = pd.read_csv(layout.run_dir(cfg) / "history" / "label.tsv", sep="\t")
    assert list(history.epoch) == [0]
    assert evaluate.run(cfg)["acc"] == pytest.approx(zero["acc"], abs=0.35)
    init = with_overrides(
        cfg, {"head.name": "linear", "head.init": "prompts", "head.epochs": 20, "head.lr": 1e-3, "run.name": "init"}
    )
    assert train.run(init)["acc"] > 0.8
    wrong = with_overrides(cfg, {"head.prompts": "noise"})
    write_set(cfg, "noise", list("abc"), {"text/pooled": np.zeros((3, 5), np.float32)}, config="x")
    with pytest.raises(HeadConfigError, match="5-d but video/pooled is 8-d"):
        train.run(wrong)


def test_head_on_another_feature_set_alone(tmp_path):
    """head.features=<set>:<key>: e.g. audio alone; rows its set marks absent are missing values, not zeros."""
    cfg = make(tmp_path, SPLITS, "task.traits=[]", "head.features=aud:audio/pooled", "head.lr=0.05")
    manifest = pd.read_csv(layout.manifest(cfg))
    rng = np.random.default_rng(2)
    centres = {c: rng.normal(size=4) * 3 for c in "abc"}
    audio = np.stack([centres[c] + rng.normal(size=4) for c in manifest.label]).astype(np.float32)
    present = np.ones(len(manifest), dtype=bool)
    present[::5] = False
    audio[~present] = 1e6  # must not count
    write_set(cfg, "aud", manifest.sample_id, {"audio/pooled": audio, "audio/present": present}, config="whisper")
    metrics = train.run(cfg)
    assert metrics["acc"] > 0.6
    bundle = load_run(layout.run_dir(cfg))
    assert bundle.inputs == {"aud:audio/pooled": "whisper"} and bundle.feat_mean.abs().max() < 100
    assert evaluate.run(cfg)["acc"] > 0.5
    with pytest.raises(ConfigError, match="head.features: no feature shards"):
        train.run(with_overrides(cfg, {"head.features": "nothing:audio/pooled"}))


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # a linear class head and a joint trait head
        ["head.name=mlp", "head.sampler=balanced", "task.traits=[]"],
        ["head.name=mlp", "task.mode=per_target", "task.label=null"],
    ],
)
def test_features_bigger_than_the_memory_setting_stream_from_disk_with_the_same_metrics(tmp_path, overrides, capsys):
    whole = make(tmp_path / "whole", SPLITS, *overrides)
    streamed = with_overrides(make(tmp_path / "streamed", SPLITS, *overrides), {"head.memory_mb": 0})
    metrics = [train.run(whole), train.run(streamed)]
    assert "streamed from disk" in capsys.readouterr().out
    assert list(layout.feature_set(streamed).glob(".rows/video-pooled-*.npy"))  # the float16 copies, made once
    assert not list(layout.feature_set(whole).glob(".rows/*"))
    for key, value in metrics[0].items():
        if isinstance(value, float):
            assert metrics[1][key] == pytest.approx(value, abs=0.005), key
    tested = [evaluate.run(whole), evaluate.run(streamed)]
    for key, value in tested[0].items():
        if isinstance(value, float):
            assert tested[1][key] == pytest.approx(value, abs=0.005), key


def test_a_sweep_over_streamed_features_skips_only_the_baselines(tmp_path, capsys):
    from vidprobe.stages import sweep

    cfg = with_overrides(
        make(tmp_path, SPLITS, "task.traits=[]"),
        {"head.memory_mb": 0, "sweep.grid": {"head.lr": [0.05, 0.01]}, "sweep.seeds": [0], "sweep.metric": "acc"},
    )
    table = sweep.run(cfg)
    assert list(table.config) == ["lr=0.05", "lr=0.01"] or list(table.config) == ["lr=0.01", "lr=0.05"]
    assert "baselines: skipped, the features are streamed from disk" in capsys.readouterr().out
