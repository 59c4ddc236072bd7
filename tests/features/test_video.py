import decord
import numpy as np
import pytest
import torch

from features.video import normalize, probe, read_frames, resize_crop, uniform_indices


def test_uniform_indices_centres_and_bounds():
    assert uniform_indices(100, 4).tolist() == [12, 37, 62, 87]
    short = uniform_indices(3, 8)  # a short video repeats frames instead of reading past the end
    assert short.min() >= 0 and short.max() == 2 and sorted(short.tolist()) == short.tolist()
    assert uniform_indices(50, 5, first=10, last=20).tolist() == [11, 13, 15, 17, 19]


def test_read_frames_matches_decord_directly(demo_root):
    path = str(sorted(demo_root.glob("train/*/*.mp4"))[0])
    frames, idx, fps = read_frames(path, 5)
    direct = decord.VideoReader(path)
    assert len(direct) == 12 and fps == pytest.approx(direct.get_avg_fps())
    assert idx.tolist() == [1, 3, 6, 8, 10]
    np.testing.assert_array_equal(frames, direct.get_batch(idx.tolist()).asnumpy())


def test_probe_reads_size_and_rate(demo_root):
    info = probe(str(next(demo_root.glob("test/*/*.mp4"))))
    assert (info.width, info.height, info.num_frames) == (128, 96, 12)
    assert info.duration == pytest.approx(1.2)


def test_resize_crop_shorter_side_then_centre():
    frames = np.zeros((2, 60, 120, 3), dtype=np.uint8)
    frames[:, :, 45:75] = 255  # a white band in the middle of the width
    out = resize_crop(frames, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert out[0, 0, 16, 16] == 255 and out[0, 0, 16, 0] == 0


def test_normalize_scales_then_standardises():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 2.0))
