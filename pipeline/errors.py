"""What the pipeline raises. With the libraries' own errors (features/errors.py, heads/errors.py) these are the
whole contract the `vidprobe` command maps to exit codes (vidprobe.cli): a setting or input that cannot work is
exit 2 with the fix, a run that broke a limit or found something broken is exit 1; a traceback means a bug."""


class ConfigError(Exception):
    """A usage or configuration problem: the CLI prints it and exits with status 2."""


class RunFailed(Exception):
    """The run went through but broke a limit (e.g. max_failures): the CLI exits with status 1."""
