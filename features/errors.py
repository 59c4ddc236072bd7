"""What the features library raises about its settings and its stores.

The `vidprobe` command maps them to exit codes: a setting or input that cannot work is a usage
error (2); a store found broken is a failed run (1). A video or audio file that cannot be read
raises `VideoError` / `AudioError` (features.video / features.audio), which stages record per
file instead of stopping.
"""


class FeatureConfigError(ValueError):
    """A features setting or input that cannot work: an unknown backbone, a model that cannot be loaded,
    sampling a backbone cannot take. The message names the config key and the fix."""


class StoreError(ValueError):
    """A feature set that is missing, incomplete, or was made with another config than the one asking."""


class CorruptStoreError(RuntimeError):
    """A feature set whose files are not whole (found by `cache verify`): a failed run, not a typo."""


class LockHeld(RuntimeError):
    """Another writer is writing this output now (its lock is alive): a failed run, naming the holder."""


class DiskFull(RuntimeError):
    """The filesystem has no room for what a stage must write: a failed run, with the numbers and how to resume."""
