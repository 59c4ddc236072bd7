"""Install the torch build this machine should run: `python scripts/install_torch.py [auto|cpu|cuda]`.

- auto: the CUDA build where an NVIDIA GPU answers (`nvidia-smi -L`), the CPU build otherwise.
- cpu:  the CPU build: a wheel pip already finds without an index (a local wheel folder) if there is one,
        else PyTorch's CPU index.
- cuda: the CUDA build from PyPI (Linux wheels there bundle CUDA). Refused at once, before anything is
        installed, when the only build pip can reach here is a CPU one.

An installed build of the other kind is replaced. The version is the one constraints.txt pins.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIP = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", "-q"]


def pinned() -> str:
    match = re.search(r"^torch==([^\s+]+)$", (ROOT / "constraints.txt").read_text(), re.M)
    if not match:
        sys.exit("install_torch: constraints.txt pins no torch version (a line torch==X.Y.Z)")
    return match.group(1)


def has_gpu() -> bool:
    return (
        shutil.which("nvidia-smi") is not None
        and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    )


def installed() -> str | None:
    """The installed torch's version (with its local label, e.g. 2.13.0+cpu), or None."""
    out = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def candidate(requirement: str, *args: str) -> tuple[str, str] | None:
    """(version, wheel URL) pip would install for `requirement` (nothing is installed), or None when none is
    reachable."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run(
            PIP + ["--dry-run", "--no-deps", "--ignore-installed", "--report", str(report), *args, requirement],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return None
        found = json.loads(report.read_text())["install"][0]
        return found["metadata"]["version"], found["download_info"]["url"]


def is_cpu(version: str | None) -> bool:
    return version is not None and version.endswith("+cpu")


def install(kind: str, version: str) -> None:
    have = installed()
    if have and have.split("+")[0] == version and is_cpu(have) == (kind == "cpu"):
        print(f"torch {have} ({kind}) is installed")
        return
    if kind == "cuda":
        found = candidate(f"torch=={version}")
        if found is None or is_cpu(found[0]):
            gpu = "" if has_gpu() else "no NVIDIA GPU answers here (nvidia-smi), and "
            sys.exit(
                f"install_torch: TORCH=cuda: {gpu}the only torch {version} pip reaches here is "
                f"{found[0] if found else 'none'}, a CPU build; nothing was installed. Use TORCH=cpu here, or "
                "run `make setup TORCH=cuda` on a machine that reaches PyPI (its Linux wheels bundle CUDA)."
            )
        args = [f"torch=={version}"]
    else:
        local = candidate(f"torch=={version}+cpu", "--no-index")  # a wheel on this disk (a find-links folder)
        args = [local[1]] if local else [f"torch=={version}", "--index-url", CPU_INDEX]
    if have:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "torch"], check=True)
    print(f"installing torch {version} ({kind} build)")
    subprocess.run(PIP + args, check=True)


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "auto"
    if kind not in ("auto", "cpu", "cuda"):
        sys.exit(f"install_torch: TORCH={kind!r}: use auto, cpu or cuda")
    if kind == "auto":
        kind = "cuda" if has_gpu() else "cpu"
    install(kind, pinned())


if __name__ == "__main__":
    main()
