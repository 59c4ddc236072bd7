"""Token grids (`backbone.token_grid`): the output tokens in each family's layout, average-pooled to T x H x W,
against transformers' own forward pooled by hand; layers; identity; refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from vidprobe import layout
from vidprobe.features.backbones import build_backbone, save_tiny
from vidprobe.features.config import BackboneConfig, SamplingConfig
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.identity import feature_config
from vidprobe.features.store import FeatureSet
from vidprobe.stages import embed, index

from tests.features.test_zoo import decoded, processor_pixels


def blocks(grid: torch.Tensor, cells: tuple[int, int, int]) -> torch.Tensor:
    """(B, T', H', W', D) -> (B, T*H*W, D): means of equal blocks, written out (T' a multiple of T, and so on)."""
    b, t, h, w, d = grid.shape
    ct, ch, cw = cells
    x = grid.reshape(b, ct, t // ct, ch, h // ch, cw, w // cw, d).mean((2, 4, 6))
    return x.reshape(b, ct * ch * cw, d)


def test_stored_tokens_are_videomaes_output_tokens_pooled_by_hand(demo_cfg, demo_root, tmp_path):
    model_dir = save_tiny("videomae", tmp_path / "vm", seed=1)
    cfg = demo_cfg(
        "backbone.name=videomae",
        f"backbone.model={model_dir}",
        "backbone.token_grid=[2, 2, 2]",
        "embed.feature_set=tok",
    )
    index.run(cfg)
    embed.run(cfg)
    fs = FeatureSet(layout.feature_set(cfg))
    assert fs.keys["video/tokens"] == (8, 64)
    prov = json.loads(fs.attrs["provenance"])
    assert prov["token_grid"] == [2, 2, 2] and "video/tokens" in prov["feature_keys"]
    sid = fs.ids[0]
    rel = next(r for r in __import__("pandas").read_csv(layout.manifest(cfg)).itertuples() if r.sample_id == sid).path
    x = processor_pixels(model_dir, decoded(demo_root / rel, fs.get("frame_indices", [sid])[0], 64))
    net = transformers.VideoMAEModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        tokens = net(pixel_values=x).last_hidden_state  # (1, 4 steps * 4 * 4, 64): time-major, then rows, columns
    expected = blocks(tokens.reshape(1, 4, 4, 4, 64), (2, 2, 2))[0].numpy()
    assert np.abs(fs.get("video/tokens", [sid])[0] - expected).max() <= 1e-5
    np.testing.assert_allclose(fs.get("video/pooled", [sid])[0], tokens.mean(1)[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["timesformer", "clip", "dinov3", "vivit"])
def test_each_layout_in_its_own_token_order(family, tmp_path):
    """TimeSformer orders (rows, columns, frames); per-frame families put CLS (and registers) first."""
    model_dir = save_tiny(family, tmp_path / family)
    bb = build_backbone(BackboneConfig(name=family, model=str(model_dir), token_grid=[2, 1, 2]))
    x = torch.randn(1, bb.num_frames, 3, bb.image_size, bb.image_size)
    net = getattr(transformers, json.loads((model_dir / "config.json").read_text())["architectures"][0])
    net = net.from_pretrained(model_dir).eval()
    with torch.no_grad():
        got = bb(x)["video/tokens"]
        if family == "timesformer":
            hidden = net(pixel_values=x).last_hidden_state[:, 1:]  # (1, rows * cols * frames, D)
            grid = hidden.reshape(1, 2, 2, bb.num_frames, -1).permute(0, 3, 1, 2, 4)
        elif family == "vivit":
            hidden = net(pixel_values=x).last_hidden_state[:, 1:]  # tubelets: (steps, rows, cols)
            grid = hidden.reshape(1, bb.num_frames // 2, 2, 2, -1)
        else:
            vision = net.vision_model if hasattr(net, "vision_model") else net
            hidden = vision(pixel_values=x[0]).last_hidden_state  # per frame: CLS, registers, then the patches
            side = bb.image_size // 16
            grid = hidden[:, -side * side :].reshape(1, bb.num_frames, side, side, -1)
    steps, side = grid.shape[1], grid.shape[2]
    assert got.shape == (1, 4, grid.shape[-1])
    torch.testing.assert_close(got, blocks(grid, (2, 1, 2)), atol=1e-5, rtol=0)
    assert steps >= 2 and side >= 2


def test_layers_apply_to_tokens(tmp_path):
    model_dir = save_tiny("videomae", tmp_path / "vm")
    bb = build_backbone(BackboneConfig(name="videomae", model=str(model_dir), token_grid=[1, 2, 2], layers=[-2]))
    x = torch.randn(1, 8, 3, 64, 64)
    net = transformers.VideoMAEModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        got = bb(x)
        hidden = net(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    assert set(got) == {"video/pooled@-2", "video/temporal@-2", "video/tokens@-2"}
    torch.testing.assert_close(
        got["video/tokens@-2"], blocks(hidden.reshape(1, 4, 4, 4, 64), (1, 2, 2)), atol=1e-5, rtol=0
    )


def test_i3d_tokens_are_its_mixed_5c_map():
    bb = build_backbone(BackboneConfig(name="i3d-kinetics400", token_grid=[2, 2, 2]))
    x = torch.rand(1, 16, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        got, feat = bb(x), bb.model.features(x)  # (1, 1024, 2, 4, 4)
    torch.testing.assert_close(got["video/tokens"], blocks(feat.permute(0, 2, 3, 4, 1), (2, 2, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(got["video/pooled"], feat.mean((2, 3, 4)))


def test_the_grid_is_part_of_the_features_identity_only_when_set():
    plain = feature_config(SamplingConfig(), BackboneConfig(), "float32")
    assert "token_grid" not in plain["backbone"]  # every feature set made before token grids keeps its hash
    grid = feature_config(SamplingConfig(), BackboneConfig(token_grid=[4, 2, 2]), "float16")
    assert grid["backbone"]["token_grid"] == [4, 2, 2]


def test_a_grid_finer_than_the_layout_or_a_family_without_one_is_refused(tmp_path):
    model_dir = save_tiny("videomae", tmp_path / "vm")
    bb = build_backbone(BackboneConfig(name="videomae", model=str(model_dir), token_grid=[8, 4, 4]))
    with pytest.raises(
        FeatureConfigError, match=r"backbone.token_grid: \[8, 4, 4\] is finer than .* use at most \[4, 4, 4\]"
    ):
        bb.check_token_grid(8, 64)
    with pytest.raises(FeatureConfigError, match=r"give \[T, H, W\]"):
        build_backbone(BackboneConfig(name="videomae", model=str(model_dir), token_grid=[2, 2]))
