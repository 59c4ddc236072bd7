"""`vidprobe configs`: the built-in configs, one line each; `vidprobe configs -c CONFIG [key=value ...]`: that
config resolved (includes, defaults and overrides), as YAML."""

from __future__ import annotations

from collections import defaultdict

import yaml

from vidprobe.config import Config
from vidprobe.yamlconfig import builtin_configs, describe_file


def listing() -> str:
    aliases = defaultdict(list)
    for name, path in builtin_configs().items():
        aliases[path].append(name)
    rows = []
    for path, names in sorted(aliases.items(), key=lambda kv: max(kv[1], key=len)):
        full = max(names, key=len)
        short = f"({min(names, key=len)})" if len(names) > 1 else ""
        rows.append(f"  {full:<30} {short:<22} {describe_file(path)}")
    return ("Built-in configs: pass one to -c by name (the short name where there is one) or list it under\n"
            "`include:`; a path to a YAML file works alike. `vidprobe configs -c NAME` prints it resolved.\n"
            + "\n".join(rows))


def run(cfg: Config | None) -> str:
    text = listing() if cfg is None else yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    print(text.rstrip())
    return text
