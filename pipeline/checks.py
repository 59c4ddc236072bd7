"""Everything a config can be checked for before any video is decoded or head trained, on top of the keys and
types `yamlconfig` checks: names no registry knows, metrics the task does not report, settings that cannot work,
every sweep grid point. `load_config` runs it; a problem is a ConfigError naming the key, where it was set and
the fix."""

from __future__ import annotations

from vidprobe.config import Config, with_overrides
from vidprobe.errors import ConfigError
from vidprobe.yamlconfig import origin_of


def checked(cfg: Config, origins: dict[str, str] | None = None, where: str = "") -> Config:
    """`cfg`, or a ConfigError listing every `problems` line, each with the file its key came from."""
    found = problems(cfg)
    if found:
        lines = [
            f"{origin}: {line}" if (origin := origin_of(line.split(":")[0].split("=")[0], origins or {})) else line
            for line in found
        ]
        raise ConfigError(f"invalid config{where}:\n  " + "\n  ".join(lines))
    return cfg


def problems(cfg: Config, grid: bool = True) -> list[str]:
    """Everything a config can be checked for before any video is decoded or head trained: the names registries
    know (backbone, head, losses, adapter, text encoder), a `head.monitor` and `sweep.metric` the task reports,
    fine-tune settings that can work, and each sweep grid point (a valid config with no such problem)."""
    from vidprobe.adapters import ADAPTERS  # config schema
    from vidprobe.features.backbones import BACKBONES  # config schema
    from vidprobe.features.text import encoders  # config schema
    from vidprobe.heads.tasks import head_problems  # config schema

    found = []
    if cfg.backbone.name not in BACKBONES:
        found.append(f"backbone.name: unknown backbone {cfg.backbone.name!r}; valid: {', '.join(sorted(BACKBONES))}")
    if cfg.dataset.adapter not in ADAPTERS:
        found.append(f"dataset.adapter: unknown adapter {cfg.dataset.adapter!r}; valid: {', '.join(sorted(ADAPTERS))}")
    if cfg.text.encoder is not None and cfg.text.encoder not in encoders():
        found.append(f"text.encoder: unknown text encoder {cfg.text.encoder!r}; valid: {', '.join(encoders())}")
    found += head_problems(cfg.head, cfg.task, need_targets=not grid) + cfg.finetune.problems()
    found += cfg.transcribe.problems()
    if not grid or not cfg.sweep.grid:  # a grid point must train something; a config may only index and embed
        return found
    from vidprobe.heads.errors import HeadConfigError  # config schema
    from vidprobe.heads.sweep import grid_points, overrides  # config schema

    try:
        points = [with_overrides(cfg, overrides(c)) for c in grid_points(cfg.sweep.grid, cfg.sweep.samples)]
    except (ConfigError, HeadConfigError) as err:
        return found + [f"sweep.grid: {err}".replace("sweep.grid: sweep.grid:", "sweep.grid:")]
    for i, point in enumerate(points):
        found += [f"sweep.grid point {i + 1}: {line}" for line in problems(point, grid=False) if line not in found]
    return list(dict.fromkeys(found))


def check_sweep(cfg: Config) -> None:
    """A ConfigError unless every grid point measures `sweep.metric`: checked where a sweep runs, not where a
    config loads, since a config that holds a sweep (params.yaml) also serves commands that change the task
    (the demo's trait experts: task.label=null) and never sweep."""
    from vidprobe.heads.metrics import metric_names  # config schema
    from vidprobe.heads.sweep import grid_points, overrides  # config schema

    for i, combo in enumerate(grid_points(cfg.sweep.grid, cfg.sweep.samples)):
        point = with_overrides(cfg, overrides(combo))
        reported = metric_names(bool(point.task.label), bool(point.task.multilabel), point.task.traits)
        if cfg.sweep.metric not in reported:
            raise ConfigError(
                f"sweep.metric: {cfg.sweep.metric!r} is not measured (grid point {i + 1}); its metrics: "
                f"{', '.join(sorted(reported))}"
            )
