"""`vidprobe configs`: the built-in configs, one line each; `vidprobe configs -c CONFIG [key=value ...]`: that
config resolved (includes, defaults and overrides), as YAML; `vidprobe configs --keys [SECTION]`: every key with
its default, what it does, and the module that declares it."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections import defaultdict

import yaml
from vidprobe.config import Config, ConfigError
from vidprobe.yamlconfig import builtin_configs, describe_file, key_comments


def listing() -> str:
    aliases = defaultdict(list)
    for name, path in builtin_configs().items():
        aliases[path].append(name)
    rows = []
    for path, names in sorted(aliases.items(), key=lambda kv: max(kv[1], key=len)):
        full = max(names, key=len)
        short = f"({min(names, key=len)})" if len(names) > 1 else ""
        rows.append(f"  {full:<30} {short:<22} {describe_file(path)}")
    return (
        "Built-in configs: pass one to -c by name (the short name where there is one) or list it under\n"
        "`include:`; a path to a YAML file works alike. `vidprobe configs -c NAME` prints it resolved.\n"
        + "\n".join(rows)
    )


def run(cfg: Config | None, section: str | None = None) -> str:
    if section is not None:
        text = keys(section or None)
    else:
        text = listing() if cfg is None else yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    print(text.rstrip())
    return text


def keys(section: str | None = None) -> str:
    sections = typing.get_type_hints(Config)
    if section and section not in sections:
        raise ConfigError(f"--keys {section}: no such section; sections: {', '.join(sections)}")
    rows = []
    for name in [section] if section else list(sections):
        cls = sections[name]
        docs = key_comments(cls)
        where = {f.name: part for part in getattr(cls, "__parts__", (cls,)) for f in dataclasses.fields(part)}
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            module = inspect.getmodule(where.get(f.name, cls)).__name__
            rows.append(
                f"{name}.{f.name} = {yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}"
                f"  # {docs.get(f.name, '')} [{module}]"
            )
    return "\n".join(rows)
