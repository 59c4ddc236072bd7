"""Dataset adapters: turn a layout on disk into manifest rows, validated before any video is opened.

Each adapter returns rows with `sample_id`, `path` (relative to `dataset.root`), `split` and its
targets; `validate` then reports every problem at once. Adapters register by name
(`dataset.adapter`), with their own settings: class folders and official releases in `folders`, tables in
`tables`, new videos without labels in `unlabelled`. Every module of this folder is imported here, so a new
layout is one new module.
"""

import importlib
import pkgutil

from vidprobe.adapters.base import ADAPTERS, adapter_settings, list_samples, register_adapter

for _module in pkgutil.iter_modules(__path__):  # each registers its adapters (vidprobe.code follows this too)
    importlib.import_module(f"{__name__}.{_module.name}")

from vidprobe.adapters.tables import class_segments  # noqa: E402

__all__ = ["ADAPTERS", "adapter_settings", "class_segments", "list_samples", "register_adapter"]
