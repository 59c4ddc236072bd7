"""predict: trained runs on new videos (real clips never seen, a folder with no labels and no split folders),
equal to evaluate on the same videos, bad files as status rows, windows as a timeline, refusals that name keys."""

import shutil

import numpy as np
import pandas as pd
import pytest
from vidprobe import layout
from vidprobe.config import ConfigError
from vidprobe.stages import audio, embed, evaluate, index, predict, text, train, transcribe

from tests.conftest import real_clips

pytestmark = pytest.mark.slow  # a demo with speech, three runs, and predict spawning the stages


@pytest.fixture(scope="module")
def runs(demo_root, tmp_path_factory):
    """The small demo embedded with the tiny VideoMAE and three runs: `linear` (class + traits), `trait` (one
    head for speed alone) and `fused` (video + Whisper audio + transcript text). `make(*overrides)` gives
    configs over the same cache."""
    from vidprobe.config import load_config

    cache = tmp_path_factory.mktemp("predict") / "cache"
    base = [
        f"dataset.root={demo_root}",
        f"paths.cache={cache}",
        "dataset.name=demo",
        "dataset.metadata=metadata.csv",
        "dataset.traits=[speed, brightness]",
        "task.traits=[speed, brightness]",
        "embed.num_workers=0",
        "index.num_workers=1",
        "audio.num_workers=1",
        "backbone.name=videomae-tiny-random",
        "head.epochs=30",
        "transcribe.feature_set=whisper",
        "text.source=transcripts",
        "text.feature_set=words",
    ]

    def make(*overrides: str):
        return load_config(None, base + list(overrides))

    cfg = make()
    for stage in (index, embed, audio, transcribe, text):
        stage.run(cfg)
    train.run(make("run.name=linear"))
    train.run(make("run.name=trait", "task.label=null", "task.traits=[speed]"))
    train.run(make("run.name=fused", "head.fuse=[whisper:audio/pooled, words:text/pooled]"))
    return make


def new_videos(folder, *clips):
    """A folder of new videos with no labels and no split folders, and two files that are not videos."""
    folder.mkdir()
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video at all\n")
    return folder


@pytest.mark.slow
def test_runs_on_real_clips_no_one_labelled(runs, tmp_path):
    folder = new_videos(tmp_path / "new", *real_clips())
    for name in ("linear", "trait", "fused"):
        table = predict.run(runs(f"run.name={name}", f"predict.input={folder}"))
        assert sorted(table.sample_id) == sorted(["bigbuckbunny", "bikes", "carphone_pristine", "empty", "notes"])
        ok = table[table.status == "ok"]
        assert dict(zip(table.sample_id, table.status)) == {
            "bigbuckbunny": "ok",
            "bikes": "ok",
            "carphone_pristine": "ok",
            "empty": "empty file",
            "notes": "unreadable",
        }
        probs = ok[[c for c in ok.columns if c.startswith("prob/")]]
        if name == "trait":
            assert probs.empty and np.isfinite(ok["pred/speed"]).all()
        else:
            assert probs.shape[1] == 4 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
            assert np.isfinite(ok[["pred/speed", "pred/brightness"]].to_numpy()).all()
        saved = pd.read_parquet(
            layout.predict_dir(runs(f"run.name={name}"), layout.predict_dataset(runs(f"predict.input={folder}")))
            / "predictions.parquet"
        )
        assert list(saved.sample_id) == list(table.sample_id)
    # the fused run says which inputs a clip lacks: bikes and carphone have no audio track, so neither
    # Whisper features nor a transcript
    missing = dict(zip(ok.sample_id, ok.missing))
    assert missing["bikes"] == missing["carphone_pristine"] == "whisper:audio/pooled,words:text/pooled"


def test_the_test_split_predicted_equals_evaluate(runs, demo_root):
    cfg = runs("run.name=linear", f"predict.input={demo_root / 'test'}")
    table = predict.run(cfg).set_index("path")
    evaluate.run(runs("run.name=linear", "evaluate.split=test"))
    evaluated = pd.read_csv(layout.eval_dir(cfg, "test") / "predictions.csv")
    evaluated.index = [str(demo_root / f"{sid}.mp4") for sid in evaluated.sample_id]
    columns = [c for c in evaluated.columns if c.startswith(("prob/", "pred/"))] + ["confidence"]
    assert len(columns) == 7 and len(table) == len(evaluated) == 8
    np.testing.assert_allclose(
        table.loc[evaluated.index, columns].to_numpy(float), evaluated[columns].to_numpy(float), atol=1e-6
    )
    assert list(table.loc[evaluated.index, "pred"]) == list(evaluated.pred)


def test_windows_give_a_timeline_and_cached_rows_are_reused(runs, demo_root, capfd):
    clip = sorted((demo_root / "test" / "left").glob("*.mp4"))[0]
    args = [
        "run.name=linear",
        f"predict.input={clip}",
        "sampling.mode=windows",
        "sampling.window=0.6",
        "sampling.stride=0.3",
    ]
    table = predict.run(runs(*args))
    assert list(table.start) == [0.0, 0.3, 0.6, 0.9] and (table.end - table.start <= 0.6 + 1e-6).all()
    assert table.row.str.endswith("#w0000").sum() == 1
    predict.run(runs(*args))
    assert "embedded 0 new samples" in capfd.readouterr().out  # the second time every row comes from the cache


def test_a_run_made_with_other_features_is_refused_with_the_keys(runs, demo_root):
    with pytest.raises(ConfigError, match=r"(?s)sampling.num_frames: None there, 4 here.*-c .*config.yaml"):
        predict.run(runs("run.name=linear", f"predict.input={demo_root / 'test'}", "sampling.num_frames=4"))
    with pytest.raises(ConfigError, match="matches no file"):
        predict.run(runs("run.name=linear", "predict.input=/nowhere/*.mp4"))
