"""Dataset adapters: turn a layout on disk into manifest rows, validated before any video is opened.

Each adapter returns rows with `sample_id`, `path` (relative to `dataset.root`), `split` and its
targets; `validate` then reports every problem at once. Adapters register by name
(`dataset.adapter`): class folders and official releases in `folders`, tables in `tables`, new videos
without labels in `unlabelled`.
"""

from vidprobe.adapters import folders, tables, unlabelled  # noqa: F401 - registers the adapters
from vidprobe.adapters.base import ADAPTERS, list_samples, register_adapter
from vidprobe.adapters.tables import class_segments

__all__ = ["ADAPTERS", "class_segments", "list_samples", "register_adapter"]
