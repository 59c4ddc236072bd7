"""The ffmpeg programs vidprobe runs, wherever they are.

`ffmpeg` on PATH (a system install) is used as it is; without one, the static ffmpeg that the PyPI
package imageio-ffmpeg ships (no root needed). `ffprobe` has no PyPI build: without it, `probe` reads
the same facts through PyAV (the `av` package) and gives them in ffprobe's JSON shape.
"""

from __future__ import annotations

import functools
import shutil
from fractions import Fraction

import ffmpeg
from vidprobe.features.errors import FeatureConfigError


class ProbeError(Exception):
    """A file ffprobe (or PyAV) cannot read; the message is what the library said."""


@functools.cache
def ffmpeg_exe() -> str:
    """The ffmpeg program: the one on PATH, else imageio-ffmpeg's static build."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise FeatureConfigError(
            f"ffmpeg: none on PATH and none from imageio-ffmpeg ({err}); "
            "pip install imageio-ffmpeg (no root needed), or apt-get install ffmpeg"
        ) from None


def ffmpeg_source() -> str:
    """Where ffmpeg comes from, for `vidprobe doctor`."""
    exe = ffmpeg_exe()
    return f"{exe} ({'PATH' if shutil.which('ffmpeg') == exe else 'imageio-ffmpeg'})"


def probe(path: str, packets: bool = False) -> dict:
    """{"streams": [...], "packets": [...]} as ffprobe gives them (packets of the first video stream, when
    asked). Raises ProbeError when the file cannot be read."""
    if shutil.which("ffprobe"):
        extra = dict(select_streams="v:0", count_packets=None, show_entries="packet=pts_time:stream") if packets else {}
        try:
            return ffmpeg.probe(path, **extra)
        except ffmpeg.Error as err:
            raise ProbeError((err.stderr or b"").decode(errors="replace")) from None
    return probe_with_pyav(path, packets)


def probe_with_pyav(path: str, packets: bool = False) -> dict:
    import av

    try:
        with av.open(path) as container:
            streams = [stream_info(s) for s in container.streams]
            video = next((s for s in container.streams if s.type == "video"), None)
            if video is not None:
                rotation = next((f.rotation for f in container.decode(video)), 0)
                if rotation:
                    streams[video.index]["side_data_list"] = [{"rotation": int(rotation)}]
            out = {
                "streams": [s for s in streams if not packets or s["codec_type"] == "video"][: 1 if packets else None]
            }
            if packets and video is not None:
                container.seek(0)
                out["packets"] = [
                    {"pts_time": str(float(p.pts * p.time_base))} for p in container.demux(video) if p.pts is not None
                ]
            return out
    except av.error.FFmpegError as err:
        raise ProbeError(str(err)) from None


def stream_info(stream) -> dict:
    info = {"index": stream.index, "codec_type": stream.type}
    if stream.type == "video":
        rate = Fraction(stream.average_rate or 0)
        info.update(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            avg_frame_rate=f"{rate.numerator}/{rate.denominator}",
        )
    return info
