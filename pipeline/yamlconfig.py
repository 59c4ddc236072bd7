"""YAML files plus `key=value` overrides, deep-merged, validated against dataclasses.

A config is a YAML file or the name of a built-in config (the package's configs/: `folder`,
`datasets/folder`, `experiments/trait-experts`). It may list other configs under `include:` (paths
relative to itself, or built-in names); they are merged first, in order, and the file's own keys win.
Every key remembers the file it came from (or the command line), so that unknown keys and wrong types,
all reported at once, each name that file and the closest valid key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.resources
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from vidprobe.errors import ConfigError

COMMAND_LINE = "command line"


WHOLE = {"sweep.grid"}  # mappings that are one value (a grid's axes): a later file or override replaces them whole


def deep_merge(base: dict, override: dict, path: str = "") -> dict:
    """Merge `override` into a copy of `base`, recursing into nested dicts (but those named in WHOLE)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and f"{path}{key}" not in WHOLE:
            out[key] = deep_merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = value
    return out


def dotted_keys(data: dict, prefix: str = "") -> list[str]:
    """Every key of a nested mapping, sections and leaves, as dotted paths."""
    out = []
    for key, value in data.items():
        out.append(prefix + str(key))
        if isinstance(value, dict):
            out += dotted_keys(value, f"{prefix}{key}.")
    return out


@cache
def builtin_configs() -> dict[str, Path]:
    """The configs shipped in the package by name: each as `<folder>/<stem>` and, where no other file has the
    same stem, as `<stem>` too (`datasets/folder`, `folder`)."""
    root = Path(str(importlib.resources.files("vidprobe.configs")))
    files = sorted(root.glob("*/*.yaml"))
    stems = Counter(p.stem for p in files)
    return {
        **{p.relative_to(root).with_suffix("").as_posix(): p for p in files},
        **{p.stem: p for p in files if stems[p.stem] == 1},
    }


def key_comments(cls: type) -> dict[str, str]:
    """The comment beside each field of a config dataclass in its source (`lr: float = 0.01  # ...`, also after a
    field written over several lines); a composed section's fields are read where each was declared (`__parts__`)."""
    out: dict[str, str] = {}
    for part in getattr(cls, "__parts__", (cls,)):
        try:
            source = textwrap.dedent(inspect.getsource(part))
        except (OSError, TypeError):  # no source to read (a frozen build): no comments
            continue
        comments = {
            tok.start[0]: tok.string.lstrip("# ").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
        body = ast.parse(source).body[0].body
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id not in out:
                out[node.target.id] = comments.get(node.end_lineno, "")
    return {k: v for k, v in out.items() if v}


def describe_file(path: Path) -> str:
    """The first line of a config file's opening comment: what it is for."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def find_config(ref: str | Path, base: Path | None = None) -> Path:
    """The file a config reference names: a path (relative to `base`, the including file's folder), else the
    built-in config of that name; an unknown name is a ConfigError naming the closest ones."""
    path = Path(base or ".", ref)
    if path.is_file():
        return path
    name = str(ref).removesuffix(".yaml")
    known = builtin_configs()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; closest built-in configs: {', '.join(close)}" if close else ""
    raise ConfigError(
        f"config file not found: {path}, and no built-in config is named {name!r}{hint} (`vidprobe configs` lists them)"
    )


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """A YAML config (a file or a built-in config's name) with its `include:` list resolved, and the file each
    dotted key came from."""
    path = find_config(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: include cycle through {' -> '.join(map(str, _seen))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    origins: dict[str, str] = {}
    for inc in includes:
        more, where = read_yaml(find_config(inc, path.parent), _seen + (path.resolve(),))
        merged = deep_merge(merged, more)
        origins.update(where)
    origins.update({key: str(path) for key in dotted_keys(data)})
    return deep_merge(merged, data), origins


def parse_overrides(items: list[str]) -> dict:
    """Turn ["head.lr=3e-4", "dataset.root=DIR"] into a nested dict."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. head.lr=3e-4)")
        value = yaml.safe_load(raw) if raw else None
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[leaf] = value
    return out


def nest(values: dict[str, Any]) -> dict:
    """`{"head.lr": 0.1}` -> `{"head": {"lr": 0.1}}`."""
    nested: dict = {}
    for key, value in values.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def build(cls: type, data: dict, origins: dict[str, str], title: str) -> Any:
    """`cls` (a dataclass of dataclass sections) from `data`; every problem at once in one ConfigError,
    each line naming the file (or the command line) its key came from."""
    errors: list[tuple[str, str]] = []
    out = _build(cls, data, "", errors)
    if errors:
        lines = [
            f"{origin_of(key, origins)}: {message}" if origin_of(key, origins) else message for key, message in errors
        ]
        raise ConfigError(f"{title}:\n  " + "\n  ".join(lines))
    return out


def origin_of(key: str, origins: dict[str, str]) -> str:
    while key and key not in origins:
        key = key.rpartition(".")[0]
    return origins.get(key, "")


def _build(cls: type, data: Any, prefix: str, errors: list[tuple[str, str]]) -> Any:
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or "config"
        errors.append((key, f"{key}: expected a mapping, got {data!r}"))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            errors.append((prefix + str(key), _unknown_key(prefix + str(key), list(fields), prefix)))
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.", errors)
        else:
            kwargs[key] = _coerce(value, hint, prefix + key, errors)
            options = fields[key].metadata.get("choices")
            if options and kwargs[key] not in options:
                errors.append((prefix + key, f"{prefix}{key}: {value!r} is not one of {', '.join(map(str, options))}"))
    return cls(**kwargs)


def _unknown_key(key: str, valid: list[str], prefix: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"unknown key {key!r}{hint} (valid: {', '.join(prefix + v for v in valid)})"


def _coerce(value: Any, hint: Any, key: str, errors: list[tuple[str, str]]) -> Any:
    """Check `value` against a simple type hint, converting numeric strings like '3e-4'."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, errors)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append((key, f"{key}: expected a mapping, got {value!r}"))
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append((key, f"{key}: expected a list, got {value!r}"))
            return value
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    errors.append((key, f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}"))
    return value
