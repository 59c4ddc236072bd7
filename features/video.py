"""Decoding behind a small interface: `open_video(path) -> VideoReader` with frame timestamps and `get`.

Three decoders give the same frames, bit for bit on H.264 (all three are libavcodec plus swscale's
YUV-to-RGB; tests/features/test_decoders.py checks it on real clips):
  decord   `get_batch` of the sampled frames
  pyav     PyAV: decodes in order only up to the last sampled frame, seeking to the keyframe before a
           sampled frame when a keyframe lies between it and the decoder's position (sparse frames), with
           as many decoding threads as torch has in that process (1 in a DataLoader worker)
  ffmpeg   the ffmpeg program's `select` filter (frame-exact, slowest)
decord 0.6 cannot decode videos that carry rotation metadata (it mis-sizes its buffers); PyAV and ffmpeg
turn them upright as players do, so rotated videos go to PyAV unless ffmpeg is asked for. `features.clips.ClipDataset.pick_decoder`
resolves `auto` for the rest by timing the candidates on the dataset's first clips.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Protocol

import ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from vidprobe.features.tools import ProbeError, ffmpeg_exe, probe_with_pyav
from vidprobe.features.tools import probe as probe_streams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's (and X-CLIP's) processors
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class VideoError(Exception):
    """A video that cannot be used; `kind` names the reason for the failure summary."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class VideoReader(Protocol):
    num_frames: int
    fps: float

    def timestamps(self) -> np.ndarray: ...  # (num_frames,) presentation time of each frame, seconds

    def get(self, indices: list[int]) -> np.ndarray: ...  # (len, H, W, 3) uint8 RGB


class DecordReader:
    def __init__(self, path: str):
        import decord  # imported here so that DataLoader workers each open their own

        self._vr = decord.VideoReader(path, num_threads=1)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())

    def timestamps(self) -> np.ndarray:
        return self._vr.get_frame_timestamp(list(range(self.num_frames)))[:, 0].astype(np.float64)

    def get(self, indices: list[int]) -> np.ndarray:
        return self._vr.get_batch(list(indices)).asnumpy()


class FFmpegReader:
    """Frame-exact reads through ffmpeg's `select` filter; rotation applied as ffmpeg applies it."""

    def __init__(self, path: str):
        self.path = path
        info = probe_streams(path, packets=True)
        stream = info["streams"][0]
        self._pts = np.sort([float(p["pts_time"]) for p in info.get("packets", []) if "pts_time" in p])
        self.num_frames = len(self._pts)
        rate = stream.get("avg_frame_rate", "0/1").split("/")
        self.fps = float(rate[0]) / float(rate[1]) if float(rate[1]) else 0.0
        w, h = int(stream["width"]), int(stream["height"])
        self.width, self.height = (h, w) if rotation_of(stream) % 180 else (w, h)

    def timestamps(self) -> np.ndarray:
        return self._pts - (self._pts[0] if len(self._pts) else 0.0)

    def get(self, indices: list[int]) -> np.ndarray:
        wanted = sorted({int(i) for i in indices})
        expr = "+".join(f"eq(n,{i})" for i in wanted)  # ffmpeg-python escapes the commas
        out, _ = (
            ffmpeg.input(self.path)
            .video.filter("select", expr)
            .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
            .run(cmd=ffmpeg_exe(), capture_stdout=True, quiet=True)
        )
        frames = np.frombuffer(out, np.uint8).reshape(-1, self.height, self.width, 3)
        if len(frames) != len(wanted):
            raise VideoError("decode error", f"ffmpeg returned {len(frames)} of {len(wanted)} frames")
        pos = {i: k for k, i in enumerate(wanted)}
        return frames[[pos[int(i)] for i in indices]]


class PyAVReader:
    """Frames by presentation order, from the packets' timestamps (read without decoding)."""

    def __init__(self, path: str, rotation: int = 0):
        import av

        self._container = av.open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = torch.get_num_threads()
        base = float(self._stream.time_base)
        packets = [(p.pts, p.is_keyframe) for p in self._container.demux(self._stream) if p.pts is not None]
        packets.sort()
        self._pts = [pts for pts, _ in packets]
        self._index = {pts: i for i, pts in enumerate(self._pts)}
        self._keys = [i for i, (_, key) in enumerate(packets) if key] or [0]
        self._seconds = (np.array(self._pts, np.float64) - (self._pts[0] if self._pts else 0)) * base
        self.num_frames = len(self._pts)
        rate = self._stream.average_rate
        self.fps = float(rate) if rate else 0.0
        self.rotation = rotation

    def close(self) -> None:
        """Free the decoder now. Left to the garbage collector (PyAV's container is a reference cycle), a decoder
        whose threads ran in this process can hang a forked DataLoader worker that collects it there."""
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = self._stream = None
            container.close()

    def __del__(self):
        self.close()

    def timestamps(self) -> np.ndarray:
        return self._seconds

    def get(self, indices: list[int]) -> np.ndarray:
        want = {int(i) for i in indices}
        if want and not 0 <= min(want) <= max(want) < self.num_frames:
            raise IndexError(f"frame {max(want)} out of range: the video has {self.num_frames}")
        got: dict[int, np.ndarray] = {}
        codec = self._stream.codec_context
        packets, fed = None, -1  # packets from the last seek; the latest frame (display order) sent to decode
        for target in sorted(want):
            key = self._keys[bisect.bisect_right(self._keys, target) - 1]
            if packets is None or key > fed:  # a keyframe past what was decoded: jump to it
                self._container.seek(self._pts[key], backward=True, any_frame=False, stream=self._stream)
                packets, fed = self._container.demux(self._stream), -1
            while target not in got:
                packet = next(packets, None)
                if packet is None:
                    raise VideoError("decode error", f"PyAV stopped before frame {target} of {self.num_frames}")
                i = self._index.get(packet.pts)
                fed = max(fed, -1 if i is None else i)
                codec.skip_frame = (
                    "DEFAULT" if i is None or i in want else "NONREF"
                )  # nothing needs a non-reference frame
                for frame in codec.decode(packet):
                    j = self._index.get(frame.pts)
                    if j in want and j not in got:  # swscale's default (threads=0: one a core) starts and
                        # joins a pool of threads every frame: a worker's core sat ~10% idle on real footage
                        got[j] = frame.to_ndarray(format="rgb24", threads=self._stream.thread_count)
        out = np.stack([got[int(i)] for i in indices]) if len(indices) else np.zeros((0, 0, 0, 3), np.uint8)
        return np.ascontiguousarray(np.rot90(out, self.rotation // 90, axes=(1, 2))) if self.rotation else out


DECODERS = {"decord": DecordReader, "pyav": PyAVReader, "ffmpeg": FFmpegReader}


def rotation_of(stream: dict) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270) from an ffprobe stream."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(side["rotation"]) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) % 360


def open_video(path: str, rotation: int = 0, decoder: str = "auto") -> VideoReader:
    """Open a video with the named decoder ('auto': decord). Rotated videos never go to decord: PyAV turns them."""
    if not os.path.exists(path):
        raise VideoError("missing", f"{path}: file not found; fix the manifest path or restore the file")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file", f"{path}: file is empty (0 bytes); re-download or remove it")
    name = "pyav" if rotation and decoder in ("auto", "decord") else "decord" if decoder == "auto" else decoder
    try:
        reader = PyAVReader(path, rotation) if name == "pyav" else DECODERS[name](path)
    except VideoError:
        raise
    except Exception as err:  # noqa: BLE001 - decoders raise many types; classify for the summary
        raise classify(path, err) from None
    if reader.num_frames == 0:
        raise VideoError("no frames", f"{path}: no video frames; re-encode or remove it")
    return reader


def classify(path: str, err: Exception) -> VideoError:
    text = err.stderr.decode(errors="replace") if isinstance(err, ffmpeg.Error) else str(err)
    if "cannot find video stream" in text or "does not contain any stream" in text:
        return VideoError("no video stream", f"{path}: no video stream (audio only?); remove it from the dataset")
    if "Invalid data" in text or "moov atom not found" in text or "Error reading" in text:
        return VideoError(
            "unreadable", f"{path}: not a readable video (corrupt, truncated or not a video); re-encode or remove it"
        )
    last = text.strip().splitlines()[-1][:200] if text.strip() else type(err).__name__
    return VideoError("decode error", f"{path}: cannot decode ({last}); re-encode or remove it")


@dataclass
class VideoInfo:
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int
    has_audio: bool


def probe(path: str) -> VideoInfo:
    """Everything the manifest records about a video; raises VideoError when it cannot be used.

    The first and last frames are decoded, so a truncated file fails here, not mid-embedding. Streams are read
    in this process through PyAV (ffprobe would cost a process per video: 20x the time on tiny clips).
    """
    try:
        streams = probe_with_pyav(path)["streams"] if os.path.isfile(path) and os.path.getsize(path) else []
    except ProbeError as err:
        raise classify(path, err) from None
    video = next((s for s in streams if s.get("codec_type") == "video"), {})
    rotation = rotation_of(video)
    reader = open_video(path, rotation)
    try:
        frames = reader.get([0, reader.num_frames - 1])
    except VideoError:
        raise
    except Exception:  # noqa: BLE001
        raise VideoError(
            "truncated",
            f"{path}: frame {reader.num_frames - 1} of {reader.num_frames} "
            f"cannot be decoded (truncated or corrupt); re-encode or remove it",
        ) from None
    ts = reader.timestamps()
    duration = float(ts[-1] + (1.0 / reader.fps if reader.fps > 0 else 0.0))
    return VideoInfo(
        num_frames=reader.num_frames,
        fps=reader.fps,
        duration=duration,
        width=frames.shape[2],
        height=frames.shape[1],
        rotation=rotation,
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
    )


PROBE_COLUMNS = ["duration", "fps", "num_frames", "width", "height", "rotation", "has_audio", "status", "error"]


def probe_record(path: str) -> dict:
    """The manifest's columns for one video (PROBE_COLUMNS); an unusable file gives status=<kind> and a readable
    error, never an exception."""
    try:
        info = probe(path)
    except VideoError as err:
        return {"status": err.kind, "error": str(err)}
    except Exception as err:  # noqa: BLE001 - whatever the decoder raised is recorded against the file
        return {"status": "error", "error": f"{path}: {type(err).__name__}: {err}; re-encode or remove it"}
    return dict(
        duration=round(info.duration, 4),
        fps=round(info.fps, 4),
        num_frames=info.num_frames,
        width=info.width,
        height=info.height,
        rotation=info.rotation,
        has_audio=info.has_audio,
        status="ok",
        error="",
    )


def resize_short_side(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H', W') uint8 with min(H', W') == size (bilinear, antialiased).

    Frames stay uint8 until they reach the model: 4x less to pass between processes.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)


def crops(x: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """`n` square crops (1: centre; 3: start, centre, end of the longer side) -> (n, T, 3, size, size)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    if n == 1:
        offsets = [(top, left)]
    elif h > w:
        offsets = [(0, left), (top, left), (h - size, left)]
    else:
        offsets = [(top, 0), (top, left), (top, w - size)]
    return torch.stack([x[:, :, t : t + size, s : s + size] for t, s in offsets])


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 pixels (..., 3, H, W) -> float32 `(x / 255 - mean) / std`, in one allocation."""
    shape = [1] * (x.ndim - 3) + [3, 1, 1]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape) * 255.0
    scale = 1.0 / (torch.tensor(std, dtype=torch.float32, device=x.device).view(shape) * 255.0)
    return x.to(torch.float32).sub_(mean_t).mul_(scale)
