"""`vidprobe stamp -c params.yaml COMMAND ...`: write down what each command reads, for dvc.yaml to depend on.

`.vidprobe/<command>.yaml` holds the installed vidprobe's version, a fingerprint of the code the command runs
and the config keys it reads, resolved (vidprobe.project). A project's dvc.yaml runs this first, in a stage
that always runs; the other stages depend on their file, so DVC re-runs exactly those whose file changed.
"""

from __future__ import annotations

from pathlib import Path

import vidprobe
import yaml
from vidprobe.code import command_closure, fingerprint
from vidprobe.config import Config, ConfigError
from vidprobe.project import READS, read_keys, stamp_file


def run(cfg: Config, commands: list[str], where: str | Path = ".") -> list[Path]:
    unknown = [c for c in commands if c not in READS]
    if unknown:
        raise ConfigError(f"stamp: no stage is called {', '.join(unknown)}; known: {', '.join(READS)}")
    resolved = cfg.to_dict()
    written = []
    for command in commands:
        path = Path(where) / stamp_file(command)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "vidprobe": vidprobe.__version__,
            "code": fingerprint(command_closure(command)),
            "config": read_keys(resolved, READS[command]),
        }
        text = (
            f"# What `vidprobe {command}` reads (written by `vidprobe stamp`; dvc.yaml's {command} stage depends "
            "on it)\n" + yaml.safe_dump(record, sort_keys=False)
        )
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    print(f"stamp: {', '.join(str(p) for p in written)}")
    return written
