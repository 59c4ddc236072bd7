"""The layers the layout promises, read from the code's imports (every import, module-level or not;
`vidprobe.code` reads them):

- features/ and heads/ (`vidprobe.features`, `vidprobe.heads`) are libraries: they never import the pipeline
  (the rest of `vidprobe`), and features/ never imports heads/; `import vidprobe` itself imports nothing;
- a stage (a command's module, pipeline/stages/<command>.py) never imports another stage;
- each dvc.yaml stage lists in `deps` every project file its commands run (their import closure, from
  pipeline/cli.py and pipeline/stages/<command>.py), so a code change can never leave `dvc repro` "up to date".
  An import marked `# config schema` (a config section gathering the settings its components declare beside
  their code) is not followed: a stage that runs a component imports it itself, and the settings' values reach
  a stage through its DVC params; `test_a_head_default_reruns_train` holds the defaults' files to the stages.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vidprobe.cli import COMMANDS
from vidprobe.code import closure, command_closure, command_module, imported_modules, module_file
from vidprobe.config import DatasetConfig
from vidprobe.heads.config import HeadConfig

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {"features": "vidprobe.features", "heads": "vidprobe.heads"}


def layer(module: str) -> str:
    """features, heads or pipeline: the folder a vidprobe module lives in."""
    return next(
        (folder for folder, name in LIBRARIES.items() if module == name or module.startswith(name + ".")), "pipeline"
    )


def library_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_modules_are_read_from_the_checkout():
    assert module_file("vidprobe.features.store") == ROOT / "features" / "store.py"
    assert module_file("vidprobe.stages.embed") == ROOT / "pipeline" / "stages" / "embed.py"
    assert module_file("vidprobe.config.Config") is None  # an attribute, not a module


def test_importing_vidprobe_or_a_library_loads_nothing_of_the_pipeline():
    assert closure("vidprobe") == {"vidprobe"}
    code = (
        "import sys, vidprobe.features.store, vidprobe.heads.trainer; "
        "print(sorted(m for m in sys.modules if m.startswith('vidprobe')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert [m for m in eval(loaded) if layer(m) == "pipeline" and m != "vidprobe"] == []


@pytest.mark.parametrize("package", ["features", "heads"])
def test_libraries_never_import_the_pipeline(package):
    bad = [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in library_files(package)
        for m in sorted(imported_modules(f))
        if layer(m) == "pipeline" and m != "vidprobe"
    ]
    assert not bad, "the libraries must stand alone; move what they need into them:\n" + "\n".join(bad)


def test_features_never_imports_heads():
    bad = [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in library_files("features")
        for m in sorted(imported_modules(f))
        if layer(m) == "heads"
    ]
    assert not bad, "features/ is the bottom layer (heads/ builds on it):\n" + "\n".join(bad)


def test_no_stage_imports_another_stage():
    stages = {command_module(c) for c in COMMANDS}
    assert all(module_file(s) for s in stages), f"a command without its module: {sorted(stages)}"
    bad = [
        f"{s} imports {m}"
        for s in sorted(stages)
        for m in sorted(imported_modules(module_file(s)))
        if m in stages and m != s
    ]
    assert not bad, (
        "a stage composes config, vidprobe.layout / vidprobe.artifacts and the libraries; what two "
        "stages share belongs in one of those:\n" + "\n".join(bad)
    )


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages, a `foreach` stage as its `do` template."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def stage_files(stage: dict) -> set[Path]:
    commands = re.findall(r"\bvidprobe\s+([a-z][a-z-]*)", stage["cmd"])
    assert commands, f"no vidprobe command in {stage['cmd']!r}"
    return {module_file(m).relative_to(ROOT) for c in commands for m in command_closure(c)}


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_dvc_deps_cover_every_file_the_stage_runs(name):
    stage = dvc_stages()[name]
    deps = [d for d in stage.get("deps", []) if "${" not in d]
    missing = sorted(str(f) for f in stage_files(stage) if not covered(f, deps))
    assert not missing, (
        f"dvc.yaml stage {name!r} runs these files but does not list them in deps (a change to "
        f"them would not re-run it): {missing}"
    )
    stale = [d for d in deps if not (ROOT / d).exists()]
    assert not stale, f"dvc.yaml stage {name!r} lists deps that do not exist: {stale}"


def test_a_head_default_reruns_train():
    """The head section's defaults live in heads/config.py and beside each head and loss (HeadConfig's parts); every
    stage that trains heads depends on each of those files."""
    schemas = {Path(inspect.getsourcefile(part)).relative_to(ROOT) for part in HeadConfig.__parts__}
    assert {"heads/config.py", "heads/losses.py", "heads/models.py", "heads/coop.py"} <= {str(s) for s in schemas}
    trainers = [n for n, s in dvc_stages().items() if re.search(r"\bvidprobe (train|evaluate|finetune)\b", s["cmd"])]
    assert trainers and all(covered(schema, dvc_stages()[n]["deps"]) for n in trainers for schema in schemas)


def test_a_dataset_default_reruns_index():
    """Each layout's settings are declared beside its adapter; the stages that list samples depend on them."""
    schemas = {Path(inspect.getsourcefile(part)).relative_to(ROOT) for part in DatasetConfig.__parts__}
    assert any(str(s).startswith("pipeline/adapters/") for s in schemas)
    listing = [n for n, s in dvc_stages().items() if re.search(r"\bvidprobe index\b", s["cmd"])]
    assert listing and all(covered(schema, dvc_stages()[n]["deps"]) for n in listing for schema in schemas)


def test_pipeline_modules_stay_short():
    long = {
        str(f.relative_to(ROOT)): n for f in library_files("pipeline") if (n := len(f.read_text().splitlines())) > 300
    }
    assert not long, f"pipeline/ composes; move library code out of these (lines): {long}"
