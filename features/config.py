"""The features library's config sections: which frames to sample from each video, which backbone embeds them.

Each field's comment is its documentation; `pipeline/config.py` composes these sections with the
others and validates YAML against them (`choice` fields accept only the values they list). `compose` builds a
section from the settings each component declares beside its code (the heads' losses, the dataset adapters).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def choice(default: Any, *options: Any) -> Any:
    """A field that accepts only `default` and `options`."""
    return field(default=default, metadata={"choices": (default, *options)})


def compose(name: str, core: type, parts: Iterable[type], module: str) -> type:
    """One flat config section: `core`'s fields and methods, then the fields of each part (a component's own
    settings dataclass, declared beside its code), so every key stays `<section>.<key>` with its default and its
    comment. Parts may share a field when they agree on its default. `__parts__` lists where each field lives."""
    fields: list[tuple[str, Any, Any]] = []
    seen = {f.name: (core, f) for f in dataclasses.fields(core)}
    for part in parts:
        hints = typing.get_type_hints(part)
        for f in dataclasses.fields(part):
            if f.name in seen:
                other, earlier = seen[f.name]
                if (earlier.default, earlier.default_factory) != (f.default, f.default_factory):
                    raise TypeError(
                        f"{name}.{f.name}: {part.__name__} and {other.__name__} declare it with different defaults"
                    )
                continue
            seen[f.name] = (part, f)
            fields.append(
                (
                    f.name,
                    hints[f.name],
                    field(default=f.default, default_factory=f.default_factory, metadata=f.metadata),
                )
            )
    cls = dataclasses.make_dataclass(name, fields, bases=(core,))
    cls.__module__, cls.__qualname__, cls.__doc__ = module, name, core.__doc__
    cls.__parts__ = tuple(dict.fromkeys(part for part, _ in seen.values()))
    return cls


@dataclass
class SamplingConfig:
    mode: str = choice("uniform", "fps", "windows")  # T frames over the segment | T at `fps` | sliding windows
    num_frames: int | None = None  # None: the backbone's own clip length
    size: int | None = None  # None: the backbone's own input size
    fps: float | None = None  # frame rate for mode fps (required) and windows (None: uniform in each window)
    views: int = 1  # K temporal views per sample, stored as an axis (N, K, ...)
    crops: int = choice(1, 3)  # 1: centre crop; 3: three crops along the longer side, stored as an axis
    window: float = 2.0  # seconds per window (mode windows)
    stride: float = 1.0  # seconds between window starts (mode windows)
    decoder: str = choice("auto", "decord", "pyav", "ffmpeg")  # auto: decord or pyav, the faster on the first clips


@dataclass
class BackboneConfig:
    name: str = "i3d-kinetics400"  # a family of the registry (`vidprobe backbones`), or auto: backbone.model's
    model: str | None = None  # hub id or local directory (transformers families); a weights file (i3d-kinetics400)
    seed: int = 0  # weight init of randomly initialised backbones
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = choice("float32", "bfloat16", "float16")  # float32 | bfloat16 | float16 (autocast on CUDA)
    layers: list[int] | None = None  # hidden states to store instead of the top outputs, e.g. [-1, -4]; None: the top
    layers_as: str = choice("separate", "concat")  # separate: keys <key>@<layer> | concat: side by side under <key>
    token_grid: list[int] | None = None  # [T, H, W]: also store video/tokens, the output tokens pooled to this grid
    compile: bool = False  # torch.compile the backbone (long first batch; pays off on large runs)
