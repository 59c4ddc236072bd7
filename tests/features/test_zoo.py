"""Every transformers family of the registry, as a tiny random model of its real architecture saved with
`save_pretrained` and loaded by path: stored through `embed` (sharded, resumed, with provenance), each equal to
a direct transformers forward on the same decoded frames, normalised as the checkpoint's processor config says."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from decord import VideoReader
from vidprobe import layout
from vidprobe.cli import main
from vidprobe.features.backbones import BACKBONES, build_backbone, save_tiny, tiny_families
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.store import FeatureSet, verify
from vidprobe.features.video import crops, resize_short_side
from vidprobe.stages import embed, index

pytestmark = pytest.mark.slow  # every family with a tiny model, each embedded three times


def processor_pixels(model_dir, frames: np.ndarray) -> torch.Tensor:
    """(1, T, 3, S, S): uint8 frames rescaled and normalised by the numbers in the checkpoint's processor config."""
    conf = json.loads((model_dir / "preprocessor_config.json").read_text())
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() * conf["rescale_factor"]
    mean, std = (torch.tensor(conf[k]).view(3, 1, 1) for k in ("image_mean", "image_std"))
    return ((x - mean) / std)[None]


def decoded(path, indices, size) -> np.ndarray:
    """The frames at `indices`, read by decord directly, short side to `size`, centre crop."""
    frames = VideoReader(str(path)).get_batch(list(indices)).asnumpy()
    return crops(resize_short_side(frames, size), size, 1)[0].permute(0, 2, 3, 1).numpy()


def direct(family: str, model_dir, x: torch.Tensor) -> np.ndarray:
    """`video/pooled` of one clip from the transformers model itself (loaded by its config's architecture), as the
    family's registered reference forward computes it from the model's own outputs."""
    config = json.loads((model_dir / "config.json").read_text())
    net = getattr(transformers, config["architectures"][0]).from_pretrained(model_dir).eval()
    with torch.no_grad():
        return BACKBONES[family].reference(net, x)[0].numpy()


@pytest.mark.parametrize("family", tiny_families())
def test_each_family_stores_what_transformers_computes_sharded_and_resumed(family, demo_cfg, demo_root, tmp_path):
    model_dir = save_tiny(family, tmp_path / family, seed=1)
    common = [f"backbone.name={family}", f"backbone.model={model_dir}", "embed.commit_every=3"]
    whole = demo_cfg(*common, "embed.feature_set=whole")
    index.run(whole)
    embed.run(whole)
    for shard in (0, 1):  # two writers, as a SLURM array runs them
        embed.run(demo_cfg(*common, "embed.feature_set=sharded", "embed.num_shards=2", f"embed.shard_index={shard}"))
    again = embed.run(demo_cfg(*common, "embed.feature_set=sharded", "embed.num_shards=2", "embed.shard_index=0"))
    assert again["new"] == 0  # resumed: nothing left to embed
    a, b = FeatureSet(layout.feature_set(whole)), verify(layout.feature_set(whole, "sharded"))  # raises if broken
    assert sorted(a.ids) == sorted(b.ids) and len(set(b.ids)) == len(b.ids)
    np.testing.assert_array_equal(a.get("video/pooled", a.ids), b.get("video/pooled", a.ids))

    manifest = pd.read_csv(layout.manifest(whole))
    sid, rel = manifest.sample_id[0], manifest.path[0]
    indices = a.get("frame_indices", [sid])[0]
    size = build_backbone(BackboneConfig(name=family, model=str(model_dir))).image_size
    expected = direct(family, model_dir, processor_pixels(model_dir, decoded(demo_root / rel, indices, size)))
    assert np.abs(a.get("video/pooled", [sid])[0] - expected).max() <= 1e-5
    with h5py.File(a.paths[0]) as h5:
        provenance = json.loads(h5.attrs["provenance"])
    assert provenance["backbone"] == family and str(model_dir) in provenance["weights"]
    assert provenance["mean_std_from"] == "preprocessor_config.json" and provenance["pooling"]


@pytest.mark.parametrize("family", tiny_families())
def test_preprocessing_follows_the_checkpoints_processor_config(family, tmp_path):
    model_dir = save_tiny(family, tmp_path / family)
    bb = build_backbone(BackboneConfig(name=family, model=str(model_dir)))
    x = torch.rand(1, bb.num_frames, 3, bb.image_size, bb.image_size)
    before = bb((x - torch.tensor(bb.mean).view(3, 1, 1)) / torch.tensor(bb.std).view(3, 1, 1))["video/pooled"]
    conf_path = model_dir / "preprocessor_config.json"
    conf = json.loads(conf_path.read_text())
    conf["image_mean"] = [0.1, 0.2, 0.3]
    conf_path.write_text(json.dumps(conf))
    changed = build_backbone(BackboneConfig(name=family, model=str(model_dir)))
    assert changed.mean == pytest.approx((0.1, 0.2, 0.3))
    after = changed((x - torch.tensor(changed.mean).view(3, 1, 1)) / torch.tensor(changed.std).view(3, 1, 1))
    assert not torch.allclose(before, after["video/pooled"])


def test_auto_reads_the_family_from_the_checkpoint(tmp_path):
    for family in ("vjepa2", "dinov2", "xclip", "image"):
        bb = build_backbone(BackboneConfig(name="auto", model=str(save_tiny(family, tmp_path / family))))
        assert bb.name == family


def test_vivits_rescale_and_offset_fold_into_mean_and_std(tmp_path):
    model_dir = save_tiny("vivit", tmp_path / "vivit")
    conf = json.loads((model_dir / "preprocessor_config.json").read_text())
    conf.update(rescale_factor=1 / 127.5, offset=True)  # ViViT's processor: x / 127.5 - 1, then (. - 0.5) / 0.5
    (model_dir / "preprocessor_config.json").write_text(json.dumps(conf))
    bb = build_backbone(BackboneConfig(name="vivit", model=str(model_dir)))
    pixels = torch.arange(0, 256, 51, dtype=torch.float32)
    ours = (pixels / 255 - bb.mean[0]) / bb.std[0]
    theirs = (pixels / 127.5 - 1 - 0.5) / 0.5
    torch.testing.assert_close(ours, theirs)


def test_layers_store_intermediate_hidden_states_separately_or_side_by_side(demo_cfg, tmp_path):
    model_dir = save_tiny("videomae", tmp_path / "vm")
    common = ["backbone.name=videomae", f"backbone.model={model_dir}"]
    separate = demo_cfg(*common, "backbone.layers=[-1,-2]", "embed.feature_set=sep")
    index.run(separate)
    embed.run(separate)
    concat = demo_cfg(*common, "backbone.layers=[-1,-2]", "backbone.layers_as=concat", "embed.feature_set=cat")
    embed.run(concat)
    sep, cat = FeatureSet(layout.feature_set(separate)), FeatureSet(layout.feature_set(concat))
    assert {"video/pooled@-1", "video/pooled@-2", "video/temporal@-2"} <= set(sep.keys)
    ids = sep.ids
    np.testing.assert_array_equal(
        cat.get("video/pooled", ids),
        np.concatenate([sep.get("video/pooled@-1", ids), sep.get("video/pooled@-2", ids)], 1),
    )
    net = transformers.VideoMAEModel.from_pretrained(model_dir).eval()
    x = torch.randn(1, 8, 3, 64, 64)
    bb = build_backbone(BackboneConfig(name="videomae", model=str(model_dir), layers=[-2]))
    with torch.no_grad():
        hidden = net(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(bb(x)["video/pooled@-2"], hidden.mean(1))
    assert (
        main(
            [
                "train",
                f"dataset.root={separate.dataset.root}",
                f"paths.cache={separate.paths.cache}",
                "dataset.name=demo",
                "task.traits=[]",
                *common,
                "backbone.layers=[-1,-2]",
                "embed.feature_set=sep",
                "head.features=video/pooled@-2",
                "run.name=layer",
                "head.epochs=5",
            ]
        )
        == 0
    )


def test_a_model_that_cannot_run_says_why(demo_cfg, tmp_path, capsys):
    model_dir = save_tiny("vjepa2", tmp_path / "vj")
    cfg = demo_cfg("backbone.name=vjepa2", f"backbone.model={model_dir}", "sampling.num_frames=5")
    index.run(cfg)
    with pytest.raises(FeatureConfigError, match="sampling.num_frames 5 is not a multiple of 2"):
        embed.run(cfg)
    with pytest.raises(FeatureConfigError, match="layers.*out of range"):
        build_backbone(BackboneConfig(name="vjepa2", model=str(model_dir), layers=[7]))
    with pytest.raises(FeatureConfigError, match="(?s)'nobody-here/no-such-model'.*local directory"):
        build_backbone(BackboneConfig(name="auto", model="nobody-here/no-such-model"))  # offline: not cached
    for family in tiny_families():
        with pytest.raises(FeatureConfigError, match="local directory"):
            build_backbone(BackboneConfig(name=family, model=str(tmp_path / "missing")))


@pytest.mark.parametrize("family", ["xclip", "siglip", "siglip2"])
def test_zero_shot_through_the_backbones_own_text_tower(family, demo_cfg, tmp_path):
    from vidprobe.heads.runs import load_run
    from vidprobe.stages import text, train

    model_dir = save_tiny(family, tmp_path / family, seed=2)
    cfg = demo_cfg(
        f"backbone.name={family}",
        f"backbone.model={model_dir}",
        "embed.feature_set=zs",
        "task.traits=[]",
        "head.name=zero-shot",
        "head.prompts=zs-prompts",
    )
    index.run(cfg)
    embed.run(cfg)
    out = text.run(cfg)  # text.encoder unset: the backbone's own text tower
    prompts = FeatureSet(out["dir"])
    assert json.loads(prompts.attrs["provenance"])["encoder"] == family
    net = getattr(transformers, json.loads((model_dir / "config.json").read_text())["architectures"][0])
    net = net.from_pretrained(model_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    padding = (
        dict(padding="max_length", max_length=16, truncation=True)
        if family.startswith("siglip")
        else dict(padding=True)
    )
    with torch.no_grad():
        emb = net.get_text_features(**tok(["a video of left."], return_tensors="pt", **padding)).pooler_output
    expected = torch.nn.functional.normalize(emb, dim=-1)[0].numpy()
    assert np.abs(prompts.get("text/pooled", ["left"])[0] - expected).max() <= 1e-5
    assert prompts.get("text/pooled", ["left"]).shape[1] == FeatureSet(layout.feature_set(cfg)).keys["video/pooled"][-1]
    metrics = train.run(cfg)  # random weights: any accuracy, but the whole path runs
    assert 0.0 <= metrics["acc"] <= 1.0 and load_run(layout.run_dir(cfg)).classes == ["down", "left", "right", "up"]
