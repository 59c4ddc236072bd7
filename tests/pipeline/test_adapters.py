"""Adapters on tiny fixtures in the official file formats: index -> embed -> train."""

from pathlib import Path

import pandas as pd
import pytest
from vidprobe import layout
from vidprobe.config import ConfigError, load_config, with_overrides
from vidprobe.stages import embed, index, train

from tests.conftest import make_video

ROOT = Path(__file__).resolve().parents[2]


def tiny(path: Path) -> Path:
    return make_video(path, seconds=0.6, size="32x32")


def run_all(root: Path, cache: Path, config: str, *extra: str):
    cfg = load_config(
        ROOT / "configs" / "datasets" / config,
        [
            f"dataset.root={root}",
            f"paths.cache={cache}",
            "embed.num_workers=0",
            "index.num_workers=2",
            "head.epochs=5",
            "index.describe=true",
            "backbone.name=videomae-tiny-random",
            "embed.feature_set=tiny",
            *extra,
        ],
    )
    manifest = index.run(cfg)
    embed.run(cfg)
    return cfg, manifest, train.run(cfg)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ucf")
    root = base / "UCF-101"
    lists = base / "ucfTrainTestlist"  # beside the videos, as the two official archives unpack
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    train, test = [], []
    for cls, idx in (("ApplyEyeMakeup", 1), ("Basketball", 2)):
        for g in range(1, 13):
            rel = f"{cls}/v_{cls}_g{g:02d}_c01.avi"
            tiny(root / rel)
            (train if g > 3 else test).append((rel, idx))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {i}\r\n" for r, i in train))  # CRLF, as released
    (lists / "testlist01.txt").write_text("".join(f"{r}\r\n" for r, _ in test))
    return root


def test_ucf101(ucf, tmp_path):
    cfg, manifest, metrics = run_all(ucf, tmp_path, "ucf101.yaml")
    assert set(manifest.split) == {"train", "val", "test"} and (manifest.status == "ok").all()
    assert len(manifest) == 24 and manifest.sample_id.is_monotonic_increasing
    assert manifest.groupby("group").split.nunique().max() == 1  # held-out val takes whole groups
    assert set(manifest.label) == {"ApplyEyeMakeup", "Basketball"} and "acc" in metrics
    again = index.run(cfg)
    pd.testing.assert_frame_equal(manifest, again)  # the same manifest on every run
    assert (Path(cfg.paths.cache) / "ucf101" / "describe.json").is_file()


def test_ucf101_validation_reports_every_problem(ucf, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.avi 2\n"  # wrong label id
        "Juggling/v_Juggling_g04_c01.avi 1\n"  # class not in classInd
        "ApplyEyeMakeup/../../../etc/passwd 1\n"  # outside the root
        "Basketball/v_Basketball_g01_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("Basketball/v_Basketball_g01_c01.avi\n")  # also in train: leakage
    cfg = load_config(
        ROOT / "configs/datasets/ucf101.yaml",
        [f"dataset.root={ucf}", f"dataset.annotations={lists}", f"paths.cache={tmp_path}"],
    )
    with pytest.raises(ConfigError) as err:
        index.run(cfg)
    msg = str(err.value)
    for expected in (
        "label 2 is 'Basketball'",
        "'Juggling' is not in classInd.txt",
        "outside dataset.root",
        "more than one split (leakage)",
    ):
        assert expected in msg, expected


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hmdb") / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("brush_hair", "cartwheel"):
        lines = []
        for i in range(8):
            name = f"{cls}_clip_{i}.avi"
            tiny(root / cls / name)
            lines.append(f"{name} {[1, 1, 1, 1, 1, 2, 2, 0][i]} \n")  # trailing space, as released
        (splits / f"{cls}_test_split1.txt").write_text("".join(lines))
    return root


def test_hmdb51(hmdb, tmp_path):
    cfg, manifest, metrics = run_all(hmdb, tmp_path, "hmdb51.yaml", "dataset.val_fraction=0.3")
    assert len(manifest) == 14  # code 0 (unused) left out
    assert (manifest.split == "test").sum() == 4 and (manifest.split == "val").sum() >= 1
    assert "brush_hair/brush_hair_clip_7" not in set(manifest.sample_id)
    assert "macro_f1" in metrics


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k400") / "kinetics400"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    rows = {"train": [], "validate": [], "test": []}
    for split, n, folder, with_class in (
        ("train", 4, "train", True),
        ("validate", 2, "val", False),
        ("test", 2, "test", True),
    ):
        for label in ("abseiling", "air drumming"):
            for i in range(n):
                yid = f"{label[:3]}{split[:2]}{i:03d}x"
                start = 10 * i
                name = f"{yid}_{start:06d}_{start + 10:06d}.mp4"
                tiny(root / folder / (f"{label}/{name}" if with_class else name))
                rows[split].append(f"{label},{yid},{start},{start + 10},{split}\n")
    rows["train"].append("abseiling,gone_video1,0,10,train\n")  # taken down: not on disk
    for split, lines in rows.items():
        (ann / f"{split}.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "".join(lines))
    return root


def test_kinetics400(kinetics, tmp_path, capsys):
    cfg, manifest, metrics = run_all(kinetics, tmp_path, "kinetics400.yaml")
    assert "1 listed videos are not on disk" in capsys.readouterr().out
    gone = manifest[manifest.sample_id == "gone_video1_000000_000010"].iloc[0]
    assert gone.status == "missing" and gone.path == "train/abseiling/gone_video1_000000_000010.mp4"
    ok = manifest[manifest.status == "ok"]
    assert ok.groupby("split").size().to_dict() == {"train": 8, "val": 4, "test": 4}
    assert set(ok.label) == {"abseiling", "air drumming"} and "acc" in metrics


def test_non_utf8_csv_is_read_and_said(kinetics, tmp_path, capsys):
    root = tmp_path / "k"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    tiny(root / "train" / "café_000000_000010.mp4")
    for split in ("train", "validate", "test"):
        (ann / f"{split}.csv").write_bytes(
            f"label,youtube_id,time_start,time_end,split\nsmiling é,café,0,10,{split}\n".encode("cp1252")
        )
    cfg = load_config(ROOT / "configs/datasets/kinetics400.yaml", [f"dataset.root={root}", f"paths.cache={tmp_path}"])
    with pytest.raises(ConfigError, match="more than one split"):  # the same clip listed in every split
        index.run(cfg)
    assert "is not UTF-8; read as Windows-1252" in capsys.readouterr().out


def test_traits_table_with_hash_split_and_masked_values(tmp_path):
    root = tmp_path / "interviews"
    lines = []
    for i in range(20):
        tiny(root / "videos" / f"cand{i:02d}.mp4")
        warmth = "null" if i == 3 else f"{i / 20:.2f}"
        lines.append(f'{{"id": "cand{i:02d}", "openness": {i % 7}, "warmth": {warmth}}}\n')
    (root / "metadata.jsonl").write_text("".join(lines))
    cfg, manifest, metrics = run_all(
        root,
        tmp_path / "cache",
        "traits.yaml",
        "dataset.path_template=videos/{id}.mp4",
        "dataset.traits=[openness, warmth]",
        "task.traits=[openness, warmth]",
        "dataset.split_fractions=[0.5, 0.25, 0.25]",
    )
    assert len(manifest) == 20 and set(manifest.split) == {"train", "val", "test"}
    assert (
        manifest.set_index("sample_id").loc["videos/cand03", "warmth"]
        != manifest.set_index("sample_id").loc["videos/cand03", "warmth"]
    )  # NaN kept
    assert "spearman/warmth" in metrics and "spearman/openness" in metrics
    dropped = load_config(
        ROOT / "configs/datasets/traits.yaml",
        [
            f"dataset.root={root}",
            f"paths.cache={tmp_path / 'c2'}",
            "dataset.path_template=videos/{id}.mp4",
            "dataset.traits=[warmth]",
            "dataset.missing_traits=drop",
        ],
    )
    assert len(index.run(dropped)) == 19


def test_meld_official_csvs(tmp_path, capsys):
    root = tmp_path / "MELD.Raw"
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    for _split, fname, folder in (
        ("train", "train_sent_emo.csv", "train_splits"),
        ("dev", "dev_sent_emo.csv", "dev_splits_complete"),
        ("test", "test_sent_emo.csv", "output_repeated_splits_test"),
    ):
        lines = []
        for d in range(2):
            for u, (emotion, sentiment) in enumerate((("joy", "positive"), ("anger", "negative"))):
                tiny(root / folder / f"dia{d}_utt{u}.mp4")
                lines.append(
                    f'{len(lines) + 1},"Oh, I\u2019m fine \u2013 really.",Ross,{emotion},{sentiment},{d},{u},1,1,'
                    f'"00:01:0{u},000","00:01:0{u + 1},500"\n'
                )
        (root / fname).write_bytes((header + "".join(lines)).encode("cp1252"))  # MELD ships Windows punctuation
    cfg, manifest, metrics = run_all(root, tmp_path / "cache", "meld.yaml")
    assert "read as Windows-1252" in capsys.readouterr().out
    assert len(manifest) == 12 and (manifest.status == "ok").all()
    row = manifest[manifest.sample_id == "val/dia1_utt0"].iloc[0]
    assert (
        row.path == "dev_splits_complete/dia1_utt0.mp4"
        and row.label == "joy"
        and row.text == "Oh, I\u2019m fine \u2013 really."
    )
    assert "acc" in metrics


def test_utterances_cut_by_the_sampler(tmp_path):
    from vidprobe.features.store import FeatureSet

    root = tmp_path / "show"
    for ep in ("ep1", "ep2", "ep3"):
        make_video(root / f"{ep}.mp4", seconds=6, size="32x32")
    rows = ["path,start,end,label,text,split\n"]
    for ep, split in (("ep1", "train"), ("ep2", "val"), ("ep3", "test")):
        rows += [
            f'{ep}.mp4,"00:00:00,000","00:00:02,000",calm,hello there,{split}\n',
            f'{ep}.mp4,"00:00:02,500","00:00:05,250",angry,go away,{split}\n',
            f"{ep}.mp4,4.0,9.0,angry,too long,{split}\n",
        ]  # ends after the video
    (root / "utterances.csv").write_text("".join(rows))
    cfg, manifest, metrics = run_all(root, tmp_path / "cache", "utterances.yaml")
    bad = manifest[manifest.status != "ok"]
    assert list(bad.status.unique()) == ["segment out of range"] and len(bad) == 3
    fs = FeatureSet(layout.feature_set(cfg))
    sid = "ep1@2.500-5.250"
    times = fs.get("frame_times", [sid])[0]
    assert times.min() >= 2.5 - 1e-6 and times.max() < 5.25
    span = fs.get("span", [sid])[0]
    assert span[0] == pytest.approx(2.5) and span[1] == pytest.approx(5.3, abs=0.06)


def test_multilabel_long_tail(tmp_path):
    import json

    root = tmp_path / "animals"
    classes = ["walking", "eating", "sleeping", "flying", "swimming"]
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rows = ["video_id,labels,split\n"]
    for i in range(24):
        split = "train" if i < 16 else "val" if i < 20 else "test"
        names = (
            ["walking"]
            + (["eating"] if i % 2 else [])
            + (["sleeping"] if i % 5 == 0 else [])
            + (["flying"] if i in (4, 18, 22) else [])
        )
        tiny(root / "videos" / f"AAC{i:04d}.mp4")
        rows.append(f'AAC{i:04d},"{",".join(names)}",{split}\n')
    (root / "annotations.csv").write_text("".join(rows))
    cfg, manifest, metrics = run_all(
        root,
        tmp_path / "cache",
        "multilabel.yaml",
        "dataset.path_template=videos/{video_id}.mp4",
        "dataset.segment_cutoffs=[10, 3]",
    )
    info = json.loads((Path(cfg.paths.cache) / "multilabel" / "classes.json").read_text())
    assert info["train_counts"] == {"walking": 16, "eating": 8, "sleeping": 4, "flying": 1, "swimming": 0}
    assert info["segment"] == {
        "walking": "head",
        "eating": "middle",
        "sleeping": "middle",
        "flying": "tail",
        "swimming": "tail",
    }
    assert manifest.set_index("sample_id").loc["videos/AAC0005", "labels"] == "walking|eating|sleeping"
    assert {"mAP", "mAP_head", "classes_without_positives"} <= set(metrics)
    assert metrics["classes_without_positives"] >= 1  # swimming never occurs

    (root / "annotations.csv").write_text(rows[0] + 'AAC0000,"walking,dancing",train\n')
    with pytest.raises(ConfigError, match=r"\['dancing'\] not in classes.txt"):
        index.run(cfg)


def test_folder_config(demo_root, tmp_path):
    cfg, manifest, metrics = run_all(demo_root, tmp_path, "folder.yaml")
    assert len(manifest) == 28 and manifest.sample_id.is_monotonic_increasing and "acc" in metrics


def test_table_validation_reports_every_problem(tmp_path):
    root = tmp_path / "d"
    tiny(root / "a.mp4")
    (root / "utterances.csv").write_text(
        "path,start,end,label,split\n"
        "a.mp4,1,2,x,train\n"
        "a.mp4,1,2,x,train\n"  # the same segment twice: duplicate sample_id
        "a.mp4,3,3,x,train\n"  # start >= end
        "a.mp4,0,1,y,test\n"
    )  # no val rows: an empty split
    (root / "bad.csv").write_text("path,label\na.mp4,x\n")
    cfg = load_config(ROOT / "configs/datasets/utterances.yaml", [f"dataset.root={root}", f"paths.cache={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        index.run(cfg)
    msg = str(err.value)
    assert "duplicate sample_ids" in msg and "start >= end" in msg and "split 'val' is empty" in msg
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['start', 'end'\]"):
        index.run(
            load_config(
                ROOT / "configs/datasets/utterances.yaml",
                [f"dataset.root={root}", f"paths.cache={tmp_path}", "dataset.table=bad.csv"],
            )
        )


def test_metadata_columns_ride_along_as_another_label(demo_root, tmp_path):
    cfg = load_config(
        ROOT / "configs" / "datasets" / "folder.yaml",
        [
            f"dataset.root={demo_root}",
            f"paths.cache={tmp_path}",
            "dataset.metadata=metadata.csv",
            "dataset.columns=[colour]",
            "index.num_workers=2",
        ],
    )
    manifest = index.run(cfg)
    meta = pd.read_csv(demo_root / "metadata.csv").set_index("path")
    assert (manifest.set_index("path").colour == meta.colour.reindex(manifest.path).values).all()
    with pytest.raises(ConfigError, match="shade"):
        index.run(with_overrides(cfg, {"dataset.columns": ["shade"]}))
