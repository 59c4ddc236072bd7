"""The decoders give the same frames and timestamps, bit for bit, on real footage (decord read directly is the
reference), rotated videos included; PyAV seeks only when frames are sparse; `auto` picks one and says so."""

import subprocess

import numpy as np
import pytest
from vidprobe.features.clips import ClipDataset
from vidprobe.features.config import SamplingConfig
from vidprobe.features.sampling import Item, plan
from vidprobe.features.video import PyAVReader, open_video

from tests.conftest import make_video, real_clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list:
    """The real sample clips as shipped, and bikes re-encoded as benchmarks/corpus.py does (2 s GOP, B-frames,
    looped from a later start)."""
    out = tmp_path_factory.mktemp("decoders") / "bikes-gop.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(real_clips()[1]),
            "-ss",
            "1.5",
            "-t",
            "6",
            "-an",
            "-vf",
            "scale=-2:120",
            "-c:v",
            "libx264",
            "-preset",
            "medium",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return [*real_clips(), out]


def patterns(n: int) -> dict:
    uniform = {t: np.linspace(0, n - 1, t).round().astype(int).tolist() for t in (8, 16, 64)}
    return {
        **{f"uniform{t}": v for t, v in uniform.items()},
        "sparse": list(range(3, n, 60)),
        "unsorted, repeated": [n - 1, 5, 5, 0, n // 2, 5],
        "all": list(range(n)),
    }


def test_decoders_agree_bit_for_bit_on_real_clips(clips):
    for path in clips:
        ref = open_video(str(path), decoder="decord")
        readers = {name: open_video(str(path), decoder=name) for name in ("pyav", "ffmpeg")}
        for name, reader in readers.items():
            assert reader.num_frames == ref.num_frames, (path.name, name)
            np.testing.assert_allclose(reader.timestamps(), ref.timestamps(), atol=1e-6, err_msg=f"{path.name} {name}")
        for what, indices in patterns(ref.num_frames).items():
            want = ref.get(indices)
            for name, reader in readers.items():
                if name == "ffmpeg" and what == "all":
                    continue  # frame-exact select over every frame: slow, and `uniform64` covers it
                got = reader.get(indices)
                assert got.shape == want.shape and np.array_equal(got, want), f"{path.name} {what}: {name} != decord"


class CountingSeeks:
    def __init__(self, container):
        self.container, self.seeks = container, []

    def seek(self, *args, **kwargs):
        self.seeks.append(args[0])
        return self.container.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.container, name)


def test_pyav_seeks_only_when_a_keyframe_lies_between_frames(clips):
    reader = PyAVReader(str(clips[-1]))  # a keyframe at most every 50 frames (and at scene cuts)
    k = reader._keys
    assert len(k) >= 4 and max(np.diff(k)) <= 50
    reader._container = counting = CountingSeeks(reader._container)
    seeks = counting.seeks
    reader.get([k[1] + 1, k[1] + 5, k[2] - 1])  # one GOP: one seek, then decoding on
    assert seeks == [reader._pts[k[1]]]
    seeks.clear()
    reader.get([k[0] + 1, k[1] + 1, k[3] + 1])  # three GOPs apart: a jump to each one's keyframe
    assert seeks == [reader._pts[k[0]], reader._pts[k[1]], reader._pts[k[3]]]
    assert np.array_equal(reader.get([k[3] + 1, k[0] + 1]), open_video(str(clips[-1])).get([k[3] + 1, k[0] + 1]))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_videos_come_out_upright_the_same_from_pyav_and_ffmpeg(tmp_path, degrees):
    plain = make_video(tmp_path / "plain.mp4", size="64x48")
    rotated = tmp_path / "rot.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(plain),
            "-c",
            "copy",
            "-metadata:s:v:0",
            f"rotate={degrees}",
            str(rotated),
        ],
        check=True,
    )
    upright = np.stack([np.rot90(f, degrees // 90) for f in open_video(str(plain), decoder="decord").get([0, 7, 19])])
    for decoder in ("auto", "decord", "pyav", "ffmpeg"):  # decord cannot: rotated videos go to PyAV
        got = open_video(str(rotated), degrees, decoder).get([0, 7, 19])
        assert np.array_equal(got, upright), decoder


def test_auto_decodes_its_first_samples_with_each_decoder_in_turn_then_keeps_the_faster(clips, monkeypatch):
    items = [Item(f"{p.stem}-{k}", str(p)) for k in range(16) for p in clips]  # 64 samples
    auto = ClipDataset(items, SamplingConfig(), 8, 64)
    opened = []
    monkeypatch.setattr(
        "vidprobe.features.clips.open_video", lambda path, rot, dec: (opened.append(dec), open_video(path, rot, dec))[1]
    )
    got = [auto[i] for i in range(len(items))]
    picked = next(it["picked"] for it in got if "picked" in it)
    n = picked["samples"]  # 3 timed each after an untimed first, more (at most 24 each) until each took 0.3 s
    assert n % 2 == 0 and 8 <= n <= 50 and opened[:n] == ["decord", "pyav"] * (n // 2)  # nothing decoded twice
    assert picked == auto.picked and picked["decoder"] in ("decord", "pyav") and got[n - 1]["picked"] == picked
    assert set(picked["ms"]) == {"decord", "pyav"} and picked["decoder"] == min(picked["ms"], key=picked["ms"].get)
    assert n == 50 or min(picked["seconds"].values()) >= 0.3  # fewer only once each has taken 0.3 s
    assert opened[n:] == [picked["decoder"]] * (64 - n) and ["picked" in it for it in got].count(True) == 1
    reference = ClipDataset(items, SamplingConfig(decoder="decord"), 8, 64)
    for i, it in enumerate(got):
        assert np.array_equal(it["pixels"], reference[i]["pixels"])
    assert "picked" not in ClipDataset(items, SamplingConfig(decoder="pyav"), 8, 64)[0]


def test_planned_uniform_frames_are_the_same_through_every_decoder(clips):
    path = str(clips[0])
    for decoder in ("decord", "pyav", "ffmpeg"):
        reader = open_video(path, decoder=decoder)
        p = plan(reader.timestamps(), 16, mode="uniform")
        if decoder == "decord":
            first = (p.indices, reader.get(list(p.indices[0])))
        assert np.array_equal(p.indices, first[0]) and np.array_equal(reader.get(list(p.indices[0])), first[1])


def test_augmented_training_clips_decode_every_sample_under_auto_as_under_decord(clips):
    from vidprobe.features.augment import Augment
    from vidprobe.features.clips import AugmentedClips

    items = [Item(f"{p.stem}-{k}", str(p)) for k in range(14) for p in clips]  # 56: past the 50 timed at most
    augment = Augment(seed=3, crop_scale=(0.5, 1.0), flip=True, jitter=0.1)
    auto, fixed = (
        AugmentedClips(items, SamplingConfig(decoder=d), 8, 64, list(range(len(items))), augment)
        for d in ("auto", "decord")
    )
    for i in range(len(items)):
        a, b = auto[i], fixed[i]
        assert a["error"] is None and np.array_equal(a["pixels"], b["pixels"]), i
    assert auto.picked is not None


def test_a_pyav_reader_frees_its_decoder_when_dropped_not_when_the_garbage_collector_runs(clips):
    """Left to the collector, a decoder whose threads ran here can hang a forked DataLoader worker that
    collects it there."""
    import gc

    import torch

    def pyav_objects() -> int:
        return sum(str(getattr(type(o), "__module__", "")).startswith("av.") for o in gc.get_objects())

    PyAVReader(str(clips[0])).get([0])  # PyAV's own module objects exist from here on
    gc.collect()
    gc.disable()
    try:
        before = pyav_objects()
        threads = torch.get_num_threads()
        torch.set_num_threads(2)  # a threaded decoder, as in a main process
        reader = PyAVReader(str(clips[0]))
        reader.get([0, 5])
        del reader
        torch.set_num_threads(threads)
        assert pyav_objects() == before
    finally:
        gc.enable()


def test_a_one_thread_pyav_reader_converts_frames_without_starting_threads(clips):
    """A worker's reader converts each frame to RGB on its own thread: swscale's default starts a pool of
    threads a frame (2 starts and joins, each a wait): a DataLoader worker's core sat ~10% idle on real
    footage. The reader's thread never blocks while it converts (voluntary context switches: 33 for 8 frames
    without the setting, 0 with it)."""
    import resource

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        reader = PyAVReader(str(clips[1]))
        frames = list(range(0, reader.num_frames, reader.num_frames // 8))[:8]
        reader.get(frames)  # the file read and the decoder set up once
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        reader.get(frames)
        waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
    finally:
        torch.set_num_threads(threads)
    assert waits < len(frames), f"{waits} waits converting {len(frames)} frames"
