"""What the heads library raises. The `vidprobe` command maps them to exit codes: a setting or input
that cannot work is a usage error (2); training that went through but could not produce a result is a
failed run (1)."""


class HeadConfigError(ValueError):
    """A head, task or fine-tune setting (or the data it meets) that cannot work; the message names the
    config key and the fix."""


class TrainingFailed(RuntimeError):
    """Training ran but could not produce a result (e.g. no validation clip could be decoded)."""
