"""A DVC project for one's own videos: the stages `vidprobe init` writes into its dvc.yaml, and what each of
them reads, which `vidprobe stamp` writes down before every `dvc repro`.

Each stage of such a project depends on `.vidprobe/<command>.yaml`: the installed vidprobe's version, a
fingerprint of the code the command runs (`vidprobe.code`) and the config keys it reads, resolved (includes,
built-in configs and defaults too). DVC re-runs a stage exactly when one of those changed: an edited key, a
changed default, an upgrade. This repository's own dvc.yaml lists the same keys as DVC params
(tests/test_layers.py holds the two together).
"""

from __future__ import annotations

from typing import Any

STAMP_DIR = ".vidprobe"
COMMANDS = ["index", "embed", "train", "evaluate"]  # the stages of a project `vidprobe init` writes

_HEAD = ["sampling", "backbone", "embed.feature_set", "embed.storage_dtype", "task", "head"]
READS = {  # the config keys (sections or dotted keys) each command reads
    "demo-data": ["demo"],
    "index": ["dataset", "index"],
    "embed": ["dataset.root", "sampling", "backbone", "embed"],
    "audio": ["audio"],
    "transcribe": ["transcribe"],
    "text": ["text", "transcribe.feature_set"],
    "train": [*_HEAD, "run"],
    "evaluate": [*_HEAD, "run", "evaluate"],
    "sweep": [*_HEAD, "sweep"],
    "finetune": ["dataset.root", "sampling", "backbone", "task.label", "finetune"],
}


def stamp_file(command: str) -> str:
    return f"{STAMP_DIR}/{command}.yaml"


def read_keys(config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The part of a resolved config (as a nested dict) that `keys` name, nested as in the config."""
    out: dict[str, Any] = {}
    for key in keys:
        *parents, leaf = key.split(".")
        src, dst = config, out
        for part in parents:
            src, dst = src[part], dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return out
