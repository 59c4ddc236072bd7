"""finetune on the small demo with the tiny random VideoMAE: what trains, resuming, torchrun, the head's start,
bench mode and export; I3D's trainable part and its export, without running it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from vidprobe import layout
from vidprobe.config import ConfigError, dump_config, load_config, with_overrides
from vidprobe.features.augment import videomix
from vidprobe.features.backbones import build_backbone
from vidprobe.features.i3d import export_i3d
from vidprobe.features.store import FeatureSet
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.finetune import checkpoint
from vidprobe.heads.finetune.model import FineTuneModel, param_groups, unfreeze
from vidprobe.stages import embed, finetune, index, train

ROOT = Path(__file__).resolve().parents[2]
STEADY = ["finetune.augment_flip=false", "finetune.augment_crop_scale=[1.0, 1.0]", "finetune.augment_jitter=0.0"]


@pytest.fixture(scope="module")
def ready(demo_root, tmp_path_factory):
    """A config over the small demo (class label only) with its manifest, tiny-VideoMAE features and a linear
    head run `head`; `make(*overrides)` gives variants writing into the same cache."""
    cache = tmp_path_factory.mktemp("ft") / "cache"
    base = [
        f"dataset.root={demo_root}",
        f"paths.cache={cache}",
        "dataset.name=demo",
        "task.traits=[]",
        "embed.num_workers=0",
        "index.num_workers=1",
        "backbone.name=videomae-tiny-random",
        "finetune.num_workers=0",
        "finetune.export=false",
        "finetune.lr=1e-3",
        "run.name=head",
    ]

    def make(*overrides: str):
        return load_config(None, base + list(overrides))

    cfg = make()
    index.run(cfg)
    embed.run(cfg)
    train.run(with_overrides(cfg, {"head.name": "linear", "head.epochs": 50}))
    return make


def tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def test_only_the_unfrozen_blocks_change_and_a_broken_video_is_skipped(ready):
    cfg = ready("finetune.name=unfreeze1", "finetune.unfreeze_blocks=1", "finetune.epochs=1", "dataset.name=broken")
    manifest = pd.read_csv(layout.manifest(ready()))  # one training video gone after indexing
    broken = manifest.index[manifest.split == "train"][0]
    manifest.loc[broken, "path"] = "train/gone.mp4"
    layout.manifest(cfg).parent.mkdir(parents=True)
    manifest.to_csv(layout.manifest(cfg), index=False)

    result = finetune.run(cfg)

    before = build_backbone(cfg.backbone).model.state_dict()  # the same seeded weights
    after = torch.load(result["dir"] / "checkpoints" / "last.pt", weights_only=True)["model"]
    changed = {k for k, v in before.items() if not torch.equal(v, after[f"backbone.{k}"])}
    trainable = {k for k in before if k.startswith(("encoder.layer.1.", "layernorm."))}
    assert changed == trainable and len(trainable) > 10
    assert result["skipped"] == 1
    failures = json.loads((result["dir"] / "failures.json").read_text())
    assert [(f["sample_id"], f["kind"]) for f in failures] == [(manifest.sample_id[broken], "missing")]
    assert sum(tsv(result["dir"] / "steps.tsv").clips) == 11  # 12 training clips, one unreadable


class Stop(Exception):
    pass


def test_a_resumed_run_takes_the_same_steps(ready, monkeypatch):
    args = [
        "finetune.epochs=2",
        "finetune.num_workers=2",
        "finetune.batch_size=4",
        "finetune.accumulate=2",
        "finetune.layer_decay=0.5",
        "finetune.warmup_epochs=1",
    ]  # augmentation on, decoded in workers
    straight = finetune.run(ready("finetune.name=straight", *args))
    assert len(straight["steps"]) == 4  # 3 micro-batches per epoch, accumulated 2 + 1

    save = checkpoint.save_checkpoint

    def stop_after_epoch_1(obj, path):
        save(obj, path)
        if path.name == "last.pt":
            raise Stop

    monkeypatch.setattr(checkpoint, "save_checkpoint", stop_after_epoch_1)
    with pytest.raises(Stop):
        finetune.run(ready("finetune.name=resumed", *args))
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    resumed = finetune.run(ready("finetune.name=resumed", "finetune.resume=true", *args))

    losses = [s["loss"] for s in resumed["steps"]]
    assert losses == pytest.approx([s["loss"] for s in straight["steps"]], abs=1e-6)
    assert losses[0] != losses[2]
    a, b = tsv(straight["dir"] / "history.tsv"), tsv(resumed["dir"] / "history.tsv")
    assert list(a.epoch) == list(b.epoch) == [0, 1, 2]
    assert np.allclose(a.val_loss, b.val_loss, atol=1e-6) and list(a.acc) == list(b.acc)

    with pytest.raises(HeadConfigError, match="finetune.lr"):  # another recipe cannot continue this run
        finetune.run(ready("finetune.name=resumed", "finetune.resume=true", *args[:-1], "finetune.lr=0.1"))


def test_torchrun_matches_one_process_with_the_same_global_batch(ready, tmp_path):
    """Two ranks of 3 clips each, gradients averaged by DDP, take the steps one process takes with 6: the same
    samples per step (DistributedSampler's permutation, shared by rank), the same mean loss."""
    common = ["finetune.epochs=2", "finetune.warmup_epochs=0", *STEADY]
    single = finetune.run(ready("finetune.name=single", "finetune.batch_size=6", *common))
    dump_config(ready("finetune.name=ddp", "finetune.batch_size=3", *common), tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "vidprobe",
            "finetune",
            "-c",
            str(tmp_path / "ddp.yaml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp_dir = single["dir"].parent / "ddp"
    steps = tsv(ddp_dir / "steps.tsv")
    assert list(steps.clips) == [6, 6, 6, 6]
    assert np.allclose(steps.loss, [s["loss"] for s in single["steps"]], atol=1e-5)
    a, b = tsv(single["dir"] / "history.tsv"), tsv(ddp_dir / "history.tsv")
    assert np.allclose(a.val_loss, b.val_loss, atol=1e-5) and list(a.acc) == list(b.acc)
    assert json.loads((ddp_dir / "metrics.json").read_text()) == pytest.approx(single["metrics"], abs=1e-6)


def test_the_start_is_the_heads_metrics(ready):
    cfg = ready("finetune.name=from-head", "finetune.init_head=head", "finetune.epochs=0")
    result = finetune.run(cfg)
    head_dir = layout.run_dir(cfg)
    head = json.loads((head_dir / "metrics.json").read_text())
    start = result["history"][0]
    assert start["epoch"] == 0 and start["acc"] == head["acc"] and start["macro_f1"] == pytest.approx(head["macro_f1"])
    ours, theirs = (pd.read_csv(d / "predictions.csv").set_index("sample_id") for d in (result["dir"], head_dir))
    ours = ours.loc[theirs.index]
    assert list(ours.pred) == list(theirs.pred)
    assert np.allclose(ours.confidence, theirs.confidence, atol=1e-4)

    train.run(with_overrides(cfg, {"head.name": "mlp", "head.epochs": 2, "run.name": "mlp-head"}))
    with pytest.raises(HeadConfigError, match="not a plain linear class head"):
        finetune.run(ready("finetune.name=from-mlp", "finetune.init_head=mlp-head"))


def test_bench_then_export_and_re_embed(ready):
    bench = finetune.run(ready("finetune.name=bench", "finetune.bench_steps=3", "finetune.batch_size=4"))
    written = json.loads((Path(ready().paths.cache) / "runs" / "bench" / "bench.json").read_text())
    for key in ("data_wait_s", "h2d_s", "compute_s", "clips_per_s", "peak_mem_mb", "est_epoch_s", "est_total_s"):
        assert written[key] == pytest.approx(bench[key]) and bench[key] >= 0
    assert bench["steps"] == 3 and len(bench["per_step"]) == 3 and bench["clips_per_s"] > 0

    cfg = ready("finetune.name=exported", "finetune.epochs=1", "finetune.export=true")
    result = finetune.run(cfg)
    model_dir = result["export"]
    assert model_dir == result["dir"] / "model" and (model_dir / "config.json").is_file()
    again = with_overrides(
        cfg, {"backbone.name": "videomae", "backbone.model": str(model_dir), "embed.feature_set": "exported"}
    )
    embed.run(again)
    provenance = json.loads(FeatureSet(layout.feature_set(again)).attrs["provenance"])
    assert provenance["weights"].startswith(f"{model_dir}@")


def test_bad_values_are_config_errors(ready):
    with pytest.raises(ConfigError) as err:  # when the config loads, before anything runs
        ready("finetune.unfreeze_blocks=-2", "finetune.augment_crop_scale=[0.5]")
    assert all(k in str(err.value) for k in ("unfreeze_blocks", "augment_crop_scale"))
    with pytest.raises(ConfigError, match="sampling.mode"):  # fine for embed, not for a fine-tune
        finetune.run(ready("sampling.mode=windows"))
    with pytest.raises(HeadConfigError, match="has 2 blocks"):
        finetune.run(ready("finetune.unfreeze_blocks=3"))
    with pytest.raises(HeadConfigError, match="finetune.monitor"):
        finetune.run(ready("finetune.monitor=mAP"))


@pytest.mark.parametrize(
    "name, top",
    [("videomae-tiny-random", "backbone.layernorm.weight"), ("clip-tiny-random", "backbone.visual_projection.weight")],
)
def test_layer_decay_from_the_top_block_down(name, top):
    bb = build_backbone(load_config(None, [f"backbone.name={name}"]).backbone)
    ft = load_config(None, ["finetune.lr=1.0", "finetune.layer_decay=0.5", "finetune.head_lr=3.0"]).finetune
    blocks = bb.blocks()
    model = FineTuneModel(bb, blocks.dim, 4)
    groups = param_groups(model, unfreeze(model, blocks, -1), ft)
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = {k: p for k, p in model.named_parameters() if "text" not in k and "logit_scale" not in k}
    assert len(lr) == len(named)  # -1: the whole video side trains (CLIP's text tower does not)
    first = next(k for k in named if ".0." in k and "layer" in k)  # a weight of the lowest block
    stem = next(k for k in named if "embeddings" in k)
    assert [lr[id(named[k])] for k in ("classifier.weight", top, first, stem)] == [3.0, 1.0, 0.5, 0.25]
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd[id(named["classifier.weight"])] == ft.weight_decay and wd[id(named["classifier.bias"])] == 0.0

    model.train()
    assert model.classifier.training and blocks.blocks[0].training and not model.backbone.training


def test_i3d_trains_only_its_last_mixed_blocks_and_exports_in_its_own_format(tmp_path):
    from vidprobe.features.i3d import build_i3d, load_weights, package_weights_path

    try:
        package_weights_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    bb = build_backbone(load_config(None, ["backbone.name=i3d-kinetics400"]).backbone)
    blocks = bb.blocks()
    model = FineTuneModel(bb, blocks.dim, 4)
    unfreeze(model, blocks, 2)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert {k.split(".")[2] for k in trainable if k.startswith("backbone.")} == {"Mixed_5b", "Mixed_5c"}
    assert not any(".bn." in k for k in trainable) and {"classifier.weight", "classifier.bias"} <= trainable

    with torch.no_grad():
        bb.model.trunk.Mixed_5c.Branch_0.Conv3d_0a_1x1.conv.weight.add_(1.0)  # as if trained
    export_i3d(bb.model, package_weights_path(), tmp_path / "ft.ckpt")
    original, exported = load_weights(package_weights_path()), load_weights(tmp_path / "ft.ckpt")
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in original.items()}
    back = build_i3d(exported).state_dict()
    assert all(torch.equal(v, back[k]) for k, v in bb.model.state_dict().items())


def test_gradual_schedule_trains_the_classifier_alone_first(ready, monkeypatch):
    """finetune.freeze_epochs=1: after epoch 1 only the classifier has moved; after epoch 2 the blocks too."""
    seen = {}
    save = checkpoint.save_checkpoint

    def keep(obj, path):
        if Path(path).name == "last.pt":
            seen[obj["epoch"]] = {k: v.clone() for k, v in obj["model"].items()}
        save(obj, path)

    monkeypatch.setattr(checkpoint, "save_checkpoint", keep)
    result = finetune.run(
        ready(
            "finetune.name=gradual",
            "finetune.unfreeze_blocks=1",
            "finetune.epochs=2",
            "finetune.freeze_epochs=1",
            "finetune.warmup_epochs=0",
            *STEADY,
        )
    )
    assert result["dir"].name == "gradual"
    start = build_backbone(ready().backbone).model.state_dict()  # the same seeded weights
    block = [k for k in start if k.startswith("encoder.layer.1.")]
    assert all(torch.equal(seen[1][f"backbone.{k}"], start[k]) for k in block)
    assert not all(torch.equal(seen[2][f"backbone.{k}"], start[k]) for k in block)
    with pytest.raises(ConfigError, match="freeze_epochs"):
        finetune.run(ready("finetune.name=bad", "finetune.epochs=2", "finetune.freeze_epochs=2"))


@pytest.mark.parametrize("mode", ["spatial", "temporal"])
def test_videomix_takes_a_part_of_another_clip_and_weighs_the_labels_by_it(mode):
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 8, 3, 16, 16).clone()  # clip i is all i
    y = torch.tensor([0, 1, 2, 3])
    mixed, other, lam = videomix(x, y, mode, 1.0, torch.Generator().manual_seed(3))
    for i in range(4):
        own = (mixed[i] == i).float().mean().item()
        assert own == pytest.approx(lam if other[i] != i else 1.0, abs=1e-6)  # the share kept is lam, exactly
        assert set(mixed[i].unique().tolist()) <= {float(i), float(other[i])}
    assert sorted(other.tolist()) == [0, 1, 2, 3] and 0 < lam < 1
    same, labels, one = videomix(x, y, "none", 1.0, torch.Generator())
    assert same is x and one == 1.0


def test_videomix_in_a_run(ready):
    result = finetune.run(ready("finetune.name=mix", "finetune.epochs=1", "finetune.videomix=temporal"))
    assert np.isfinite(tsv(result["dir"] / "steps.tsv").loss).all()
