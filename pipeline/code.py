"""What code a command runs: the import closure of its module, read from the source (nothing is imported),
and a fingerprint of it. `vidprobe stamp` writes the fingerprints that a project's dvc.yaml depends on, so
that upgrading vidprobe re-runs the stages whose code changed; tests/test_layers.py checks this
repository's dvc.yaml deps against the same closures.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import pkgutil
import sys
from functools import cache
from pathlib import Path

PACKAGE = "vidprobe"


@cache
def spec_of(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where the import system would load `name` from, found without running it or its packages."""
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        above = spec_of(parent)
        if above is None or above.submodule_search_locations is None:  # a module has no submodules
            return None
        path = list(above.submodule_search_locations)
    for finder in sys.meta_path:
        if (spec := getattr(finder, "find_spec", lambda *_: None)(name, path)) is not None:
            return spec
    return None


def module_file(name: str) -> Path | None:
    """The source file of a vidprobe module (`vidprobe.heads.finetune` -> .../heads/finetune/__init__.py), or None
    when `name` is not a module (an attribute, a class)."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    spec = spec_of(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def import_nodes(tree: ast.AST):
    """Every import statement, at any depth, except under `if TYPE_CHECKING:` (which never runs)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in import_nodes(ast.Module([child], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from import_nodes(node)


IMPORTS_ITS_MODULES = "pkgutil.iter_modules(__path__)"  # a package that imports every module of its folder
SCHEMA = "# config schema"  # an import that only gathers the settings a component declares, for a config section


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """The vidprobe modules `path` imports anywhere in it (a lazy import inside a function counts: it runs),
    with the packages whose `__init__.py` that runs. A package `name` whose `__init__.py` imports every module
    of its folder (`for m in pkgutil.iter_modules(__path__): import_module(...)`, where one new module is a new
    backbone family or dataset layout) imports each of them.

    An import marked `# config schema` is not followed: it gathers the settings that components declare beside
    their code (a loss's, an adapter's) into a config section. Their values reach a stage through the resolved
    config (DVC params, `vidprobe stamp`), and a stage that runs a component imports it itself; following the
    mark would make every stage depend on every loss, head and adapter (editing a loss would re-embed)."""
    source = path.read_text()
    lines = source.splitlines()
    out = set()
    if name and path.name == "__init__.py" and IMPORTS_ITS_MODULES in source:
        out.update(f"{name}.{m.name}" for m in pkgutil.iter_modules([str(path.parent)]))
    for node in import_nodes(ast.parse(source)):
        if lines[node.end_lineno - 1].rstrip().endswith(SCHEMA):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]  # `from pkg import module`
        else:
            continue
        for name in names:
            if module_file(name):
                parts = name.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


@cache
def closure(module: str) -> frozenset[str]:
    """Every vidprobe module that importing `module` runs, `module` and its packages included."""
    seen: set[str] = set()
    todo = [module] + [module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo += imported_modules(module_file(name), name)
    return frozenset(seen)


def command_module(command: str) -> str:
    """The module of a `vidprobe` command: `vidprobe.stages.<command>` (demo-data: vidprobe.stages.demo_data)."""
    return f"{PACKAGE}.stages.{command.replace('-', '_')}"


def command_closure(command: str) -> frozenset[str]:
    """What `vidprobe <command>` runs: the CLI's closure and its module's."""
    return closure(f"{PACKAGE}.cli") | closure(command_module(command))


def fingerprint(modules: frozenset[str] | set[str]) -> str:
    """A sha256 over the modules' names and sources: it changes when any of their code does."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()
