"""The layers the layout promises, read from the code's imports (every import, module-level or not):

- features/ and heads/ are libraries: they never import pipeline/, and features/ never imports heads/;
- a stage (a command's module, pipeline/<command>.py) never imports another stage;
- each dvc.yaml stage lists in `deps` every project file its commands run (their import closure, from
  pipeline/cli.py and pipeline/<command>.py), so a code change can never leave `dvc repro` "up to date".
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from heads.config import HeadConfig
from pipeline.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "heads", "pipeline")


def module_file(name: str) -> Path | None:
    """The file of a project module (`heads.finetune` -> heads/finetune/__init__.py), or None."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_nodes(tree: ast.AST):
    """Every import statement, at any depth, except under `if TYPE_CHECKING:` (which never runs)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in import_nodes(ast.Module([child], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from import_nodes(node)


def imported_modules(path: Path) -> set[str]:
    """Project modules `path` imports anywhere in it (a lazy import inside a function counts: it runs)."""
    out = set()
    for node in import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]  # `from pkg import module`
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and module_file(name):
                parts = name.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # packages' __init__ run too
    return out


@cache
def closure(module: str) -> frozenset[Path]:
    """Every project file that importing `module` runs."""
    seen: set[str] = set()
    todo = [module] + [module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo += imported_modules(module_file(name))
    return frozenset(module_file(n).relative_to(ROOT) for n in seen)


def command_module(command: str) -> str:
    return f"pipeline.{command.replace('-', '_')}"


def library_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["features", "heads"])
def test_libraries_never_import_the_pipeline(package):
    bad = [f"{f.relative_to(ROOT)} imports {m}" for f in library_files(package) for m in sorted(imported_modules(f))
           if m.split(".")[0] == "pipeline"]
    assert not bad, "the libraries must stand alone; move what they need into them:\n" + "\n".join(bad)


def test_features_never_imports_heads():
    bad = [f"{f.relative_to(ROOT)} imports {m}" for f in library_files("features") for m in sorted(imported_modules(f))
           if m.split(".")[0] == "heads"]
    assert not bad, "features/ is the bottom layer (heads/ builds on it):\n" + "\n".join(bad)


def test_no_stage_imports_another_stage():
    stages = {command_module(c) for c in COMMANDS}
    assert all(module_file(s) for s in stages), f"a command without its module: {sorted(stages)}"
    bad = [f"{s} imports {m}" for s in sorted(stages) for m in sorted(imported_modules(module_file(s)))
           if m in stages and m != s]
    assert not bad, ("a stage composes config, pipeline.layout / pipeline.artifacts and the libraries; what two "
                     "stages share belongs in one of those:\n" + "\n".join(bad))


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages, a `foreach` stage as its `do` template."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def stage_files(stage: dict) -> set[Path]:
    commands = re.findall(r"\bvidprobe\s+([a-z][a-z-]*)", stage["cmd"])
    assert commands, f"no vidprobe command in {stage['cmd']!r}"
    return set(closure("pipeline.cli")).union(*(closure(command_module(c)) for c in commands))


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_dvc_deps_cover_every_file_the_stage_runs(name):
    stage = dvc_stages()[name]
    deps = [d for d in stage.get("deps", []) if "${" not in d]
    missing = sorted(str(f) for f in stage_files(stage) if not covered(f, deps))
    assert not missing, (f"dvc.yaml stage {name!r} runs these files but does not list them in deps (a change to "
                         f"them would not re-run it): {missing}")
    stale = [d for d in deps if not (ROOT / d).exists()]
    assert not stale, f"dvc.yaml stage {name!r} lists deps that do not exist: {stale}"


def test_a_head_default_reruns_train():
    """The head config's defaults live in heads/config.py; every stage that trains heads depends on that file."""
    schema = Path(inspect.getsourcefile(HeadConfig)).relative_to(ROOT)
    trainers = [n for n, s in dvc_stages().items() if re.search(r"\bvidprobe (train|evaluate|finetune)\b", s["cmd"])]
    assert trainers and all(covered(schema, dvc_stages()[n]["deps"]) for n in trainers)


def test_pipeline_modules_stay_short():
    long = {str(f.relative_to(ROOT)): n for f in library_files("pipeline")
            if (n := len(f.read_text().splitlines())) > 300}
    assert not long, f"pipeline/ composes; move library code out of these (lines): {long}"
