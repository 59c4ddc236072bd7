"""train on a hand-made feature set: bad features, unseen classes, every loss and head."""

import numpy as np
import pandas as pd
import pytest

from features.store import ShardWriter
from pipeline import evaluate, train
from pipeline.config import ConfigError, load_config
from pipeline.embed import feature_hash


def make(tmp_path, labels_by_split, *overrides, nan_id=None):
    cfg = load_config(None, [f"paths.cache={tmp_path}", "dataset.name=t", "task.traits=[score]", "head.epochs=30",
                             *overrides])
    rows, rng = [], np.random.default_rng(0)
    for split, labels in labels_by_split.items():
        rows += [{"sample_id": f"{split}/{i}", "path": f"{split}/{i}.mp4", "split": split, "label": lab,
                  "score": float(i % 5), "status": "ok"} for i, lab in enumerate(labels)]
    manifest = pd.DataFrame(rows)
    cfg.manifest_path().parent.mkdir(parents=True)
    manifest.to_csv(cfg.manifest_path(), index=False)
    centres = {c: rng.normal(size=8) * 3 for c in "abc"}
    x = np.stack([centres[r["label"]] + rng.normal(size=8) for r in rows]).astype(np.float32)
    x[:, :2] += 3 * manifest.score.to_numpy()[:, None]  # the trait is readable from the features
    if nan_id is not None:
        x[list(manifest.sample_id).index(nan_id), 3] = np.nan
    h, text = feature_hash(cfg)
    w = ShardWriter(cfg.feature_dir(), 0, 1, {"config_hash": h, "config": text})
    w.append(list(manifest.sample_id), {"video/pooled": x})
    w.finish()
    return cfg


SPLITS = {"train": list("abc" * 10), "val": list("abc" * 3), "test": list("abc" * 3)}


@pytest.mark.parametrize("overrides", [
    [],
    ["head.name=mlp", "head.loss=focal", "head.regression_loss=ccc"],
    ["head.monitor=acc", "task.traits=[]", "head.class_weights=balanced"],
    ["head.loss=ce", "head.class_weights=effective", "head.label_smoothing=0.1", "head.regression_loss=huber",
     "head.schedule=constant", "head.warmup_epochs=3", "task.traits=[]"],
])
def test_heads_and_losses_learn(tmp_path, overrides):
    cfg = make(tmp_path, SPLITS, *overrides)
    metrics = train.run(cfg)
    assert metrics["acc"] > 0.8
    if cfg.task.traits:
        assert metrics["spearman/score"] > 0.5 and "ccc/score" in metrics
    assert evaluate.run(cfg)["acc"] > 0.8


def test_nan_features_name_the_samples(tmp_path):
    cfg = make(tmp_path, SPLITS, nan_id="train/4")
    with pytest.raises(ConfigError, match=r"NaN or inf .*'train/4'"):
        train.run(cfg)


def test_class_absent_from_train_is_a_warning(tmp_path, capsys):
    cfg = make(tmp_path, {"train": list("ab" * 10), "val": list("abc" * 3), "test": list("abc" * 3)})
    metrics = train.run(cfg)
    assert "absent from train" in capsys.readouterr().out
    assert metrics["acc"] <= 2 / 3 + 1e-9  # the 'c' samples count as wrong
    assert evaluate.run(cfg)["acc"] <= 2 / 3 + 1e-9
    assert "were not seen in training" in capsys.readouterr().out


def test_few_shot_and_long_tail_options(tmp_path):
    cfg = make(tmp_path, SPLITS, "head.k_train=2", "head.k_val=1", "head.sampler=balanced", "head.loss=ldam",
               "head.drw_epoch=10", "task.traits=[]")
    train.run(cfg)
    preds = pd.read_csv(cfg.run_dir() / "predictions.csv")
    assert len(preds) == 3  # one validation sample per class
    log = (cfg.run_dir() / "history" / "label.tsv").read_text()
    assert log.count("\n") > 1
    again = make(tmp_path / "again", SPLITS, "head.k_train=2", "head.k_val=1", "task.traits=[]")
    train.run(again)
    assert list(pd.read_csv(again.run_dir() / "predictions.csv").sample_id) == list(preds.sample_id)  # same draw


def test_attention_head_on_sequence_features(tmp_path):
    cfg = make(tmp_path, SPLITS, "task.traits=[]")
    seq = make(tmp_path / "seq", SPLITS, "task.traits=[]", "head.name=attention")
    with pytest.raises(ConfigError, match="needs \\(N, T, D\\) features"):
        train.run(seq)  # the hand-made set only has pooled features
    assert train.run(cfg)["acc"] > 0.8


def test_per_target_heads_use_every_known_value(tmp_path):
    cfg = make(tmp_path, SPLITS, "task.traits=[score, other]", "task.mode=per_target", "task.n_jobs=2",
               "task.label=null")
    manifest = pd.read_csv(cfg.manifest_path())
    manifest["other"] = manifest.score * 2.0
    manifest.loc[manifest.sample_id.isin(["train/0", "train/1", "val/2"]), "score"] = np.nan  # masked, not dropped
    manifest.to_csv(cfg.manifest_path(), index=False)
    a = train.run(cfg)
    assert a["spearman/score"] > 0.5 and a["spearman/other"] > 0.5
    assert (cfg.run_dir() / "history" / "trait-score.tsv").is_file()
    b = train.run(cfg)
    assert a == b  # threads, same numbers
    joint = train.run(make(tmp_path / "j", SPLITS, "task.traits=[score]", "task.label=null"))
    assert "spearman/score" in joint
