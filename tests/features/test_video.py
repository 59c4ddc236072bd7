import decord
import numpy as np
import pytest
import torch
from vidprobe.features.sampling import plan
from vidprobe.features.video import crops, normalize, open_video, probe, resize_short_side


def test_planned_frames_match_decord_directly(demo_root):
    path = str(sorted(demo_root.glob("train/*/*.mp4"))[0])
    reader = open_video(path)
    direct = decord.VideoReader(path)
    assert reader.num_frames == len(direct) == 12 and reader.fps == pytest.approx(direct.get_avg_fps())
    p = plan(reader.timestamps(), 5)
    assert p.indices[0].tolist() == [1, 3, 6, 8, 10]
    np.testing.assert_array_equal(reader.get(p.indices[0].tolist()), direct.get_batch(p.indices[0].tolist()).asnumpy())
    np.testing.assert_allclose(p.times[0], direct.get_frame_timestamp(p.indices[0].tolist())[:, 0])


def test_probe_reads_size_and_rate(demo_root):
    info = probe(str(next(demo_root.glob("test/*/*.mp4"))))
    assert (info.width, info.height, info.num_frames) == (128, 96, 12)
    assert info.duration == pytest.approx(1.2)


def test_resize_then_centre_crop():
    frames = np.zeros((2, 60, 120, 3), dtype=np.uint8)
    frames[:, :, 45:75] = 255  # a white band in the middle of the width
    out = crops(resize_short_side(frames, 32), 32, 1)[0]
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert out[0, 0, 16, 16] == 255 and out[0, 0, 16, 0] == 0


def test_normalize_scales_then_standardises():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 2.0))
