import pytest
import torch
from transformers import VideoMAEModel

from features.backbones import build_backbone, save_tiny_videomae
from pipeline.config import BackboneConfig, ConfigError


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


def test_tiny_random_is_seeded_and_recorded():
    a, b = build_backbone(BackboneConfig(seed=0)), build_backbone(BackboneConfig(seed=0))
    c = build_backbone(BackboneConfig(seed=1))
    x = torch.randn(1, 8, 3, 64, 64)
    torch.testing.assert_close(a.embed(x)["video/pooled"], b.embed(x)["video/pooled"])
    assert a.weights == b.weights != c.weights
    assert a.provenance()["pooling"].startswith("mean over all patch tokens")


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ConfigError, match="valid: videomae, videomae-tiny-random"):
        build_backbone(BackboneConfig(name="r3d18"))


def test_unloadable_model_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(ConfigError, match="could not load VideoMAE"):
        build_backbone(BackboneConfig(name="videomae", model=str(tmp_path / "missing")))
