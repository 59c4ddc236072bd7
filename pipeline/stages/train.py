"""`vidprobe train`: heads on cached features, one per target kind (class, multi-label classes, numeric traits).

Reads the feature sets the head config names (checked against this config, or recorded by their config
hash), trains with heads.tasks and writes the run folder `<cache>/runs/<run.name>/` (heads.runs), through
`vidprobe.training`, which `vidprobe sweep` shares.
"""

from __future__ import annotations

from vidprobe.config import Config
from vidprobe.training import train_runs


def run(cfg: Config) -> dict:
    """Train the heads of one config; write its run folder; return the validation metrics."""
    return train_runs([cfg])[0]
