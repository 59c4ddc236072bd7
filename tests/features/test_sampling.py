import numpy as np
import pytest
from vidprobe.features.sampling import plan

TS = np.arange(100) / 10.0  # 10 s at 10 fps


def test_uniform_views_are_offset_inside_each_step():
    p = plan(TS, 4, views=2)
    assert p.indices.tolist() == [[6, 31, 56, 81], [18, 43, 68, 93]]
    assert p.padded.tolist() == [0, 0]
    np.testing.assert_allclose(p.times, TS[p.indices])


def test_segment_limits_frames_to_start_end():
    p = plan(TS, 4, start=2.0, end=4.0)
    assert p.indices.min() >= 20 and p.indices.max() < 40
    np.testing.assert_allclose(p.spans[0], [2.0, 4.0])


def test_short_segment_pads_with_the_last_frame():
    p = plan(TS[:3], 8)
    assert p.indices.tolist() == [[0, 1, 2, 2, 2, 2, 2, 2]] and p.padded.tolist() == [5]


def test_fixed_rate_and_views_spread_over_the_segment():
    p = plan(TS, 4, mode="fps", fps=2.0, views=2)  # 4 frames at 2 fps = 2 s per view
    assert p.indices.tolist() == [[20, 25, 30, 35], [60, 65, 70, 75]]
    np.testing.assert_allclose(np.diff(p.times, axis=1), 0.5)


def test_fixed_rate_past_the_end_is_padded():
    p = plan(TS[:10], 4, mode="fps", fps=2.0)  # 1 s of video, 2 s wanted
    assert p.indices.tolist() == [[0, 5, 5, 5]] and p.padded.tolist() == [2]


def test_variable_frame_rate_uses_real_timestamps():
    ts = np.concatenate([np.arange(10) / 10.0, 1.0 + np.arange(5) / 2.0])  # 10 fps, then 2 fps
    p = plan(ts, 3, mode="fps", fps=1.0)
    np.testing.assert_allclose(p.times[0], [0.0, 1.0, 2.0])


def test_windows_cover_the_video_with_a_stride():
    p = plan(TS, 4, mode="windows", window=4.0, stride=3.0)
    np.testing.assert_allclose(p.spans, [[0, 4], [3, 7], [6, 10], [9, 10]])
    assert p.padded.tolist() == [0, 0, 0, 0] and (p.indices[1] >= 30).all() and (p.indices[1] < 70).all()


def test_unknown_mode():
    with pytest.raises(ValueError):
        plan(TS, 4, mode="random")
