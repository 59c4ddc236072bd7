"""vidprobe as a package people install: one import name, the configs and data inside the wheel, and from
a fresh environment outside the checkout `vidprobe init` + `dvc repro` and the README's notebook example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.pipeline.test_export_api import readme_example

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "pipeline": "vidprobe",
    "features": "vidprobe/features",
    "heads": "vidprobe/heads",
    "configs": "vidprobe/configs",
}  # pyproject's package-dir: repository folder -> installed place
TINY = {"backbone": {"name": "videomae-tiny-random"}, "embed": {"num_workers": 0}, "index": {"num_workers": 1}}


def run(*cmd, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel `python -m build` makes of a copy of the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src, cwd=src)
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("vidprobe-*-py3-none-any.whl")
    return wheel


def test_help_says_where_to_start_and_every_public_name_is_documented():
    import pydoc

    import vidprobe

    page = pydoc.render_doc(vidprobe, renderer=pydoc.plaintext)
    assert "Where to start" in page and "vidprobe.features" in page and "vidprobe.heads" in page
    for name in vidprobe.__all__:
        assert name in page and (getattr(vidprobe, name).__doc__ or "").strip(), name
    assert sorted(dir(vidprobe)) == sorted(set(dir(vidprobe)) | set(vidprobe.__all__))


@pytest.mark.slow
def test_the_wheel_holds_one_import_package_with_its_configs_and_data(dist):
    names = set(zipfile.ZipFile(wheel_of(dist)).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"vidprobe"}
    expected = {
        f"{place}/{p.relative_to(ROOT / folder).as_posix()}"
        for folder, place in FOLDERS.items()
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".yaml", ".txt") and "__pycache__" not in p.parts
    }
    assert expected - names == set(), "files of the checkout missing from the wheel (pyproject's packages)"
    assert len(list(dist.glob("vidprobe-*.tar.gz"))) == 1
    assert "PASSED" in run(sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir(), cwd=dist)


@pytest.fixture(scope="module")
def fresh(dist, tmp_path_factory) -> tuple[Path, dict]:
    """A new virtual environment outside the checkout with the wheel installed (not editable, --no-deps); its
    dependencies come from the test environment, which it sees through a .pth file."""
    where = tmp_path_factory.mktemp("fresh")
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).strip())
    paths = sysconfig.get_paths()
    (site / "zz-test-environment.pth").write_text(f"{paths['purelib']}\n{paths['platlib']}\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel_of(dist), cwd=where)
    env = {
        **os.environ,
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return python, env


@pytest.mark.slow
def test_import_vidprobe_beside_a_users_own_features_and_pipeline_modules(fresh, tmp_path):
    python, env = fresh
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    assert not {"pipeline", "features", "heads"} & {p.name for p in site.iterdir()}
    for name in ("features", "pipeline"):  # common names in research code
        (tmp_path / f"{name}.py").write_text(f"WHOSE = 'mine: {name}'\n")
    code = (
        "import vidprobe, features, pipeline, vidprobe.features.store, vidprobe.heads.trainer; "
        "print(vidprobe.__file__); print(features.WHOSE, '|', pipeline.WHOSE); print(vidprobe.__version__)"
    )
    out = run(python, "-c", code, cwd=tmp_path, env=env).splitlines()
    assert out[0].startswith(str(site / "vidprobe")) and out[1] == "mine: features | mine: pipeline"
    assert run(python.parent / "vidprobe", "--version", cwd=tmp_path, env=env).strip() == f"vidprobe {out[2]}"
    listed = run(python.parent / "vidprobe", "configs", cwd=tmp_path, env=env)
    assert "datasets/ucf101" in listed and "experiments/trait-experts" in listed


@pytest.mark.slow
def test_init_then_dvc_repro_with_the_installed_vidprobe(fresh, demo_root, tmp_path):
    python, env = fresh
    overrides = ["backbone.name=videomae-tiny-random", "embed.num_workers=0", "index.num_workers=1", "head.epochs=30"]
    run(
        python.parent / "vidprobe",
        "init",
        "proj",
        "--dataset",
        "folder",
        "--root",
        demo_root,
        *overrides,
        cwd=tmp_path,
        env=env,
    )
    proj = tmp_path / "proj"
    first = run(python, "-m", "dvc", "repro", cwd=proj, env=env)
    for stage in ("stamp", "index", "embed", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first
    metrics = run(python, "-m", "dvc", "metrics", "show", cwd=proj, env=env)
    assert re.search(r"\bacc\b", metrics) and "eval/test/metrics.json" in metrics
    stamp = (proj / ".vidprobe" / "embed.yaml").read_text()
    assert "vidprobe: " in stamp and "code: " in stamp and "videomae-tiny-random" in stamp

    again = run(python, "-m", "dvc", "repro", cwd=proj, env=env)
    assert "Running stage 'stamp'" in again and "Running stage 'embed'" not in again
    (proj / "params.yaml").write_text((proj / "params.yaml").read_text().replace("  epochs: 30", "  epochs: 31"))
    third = run(python, "-m", "dvc", "repro", cwd=proj, env=env)
    assert "Running stage 'train'" in third and "Running stage 'embed'" not in third


@pytest.mark.slow
def test_the_readme_notebook_example_runs_in_the_fresh_environment(fresh, demo_root, tmp_path):
    python, env = fresh
    shutil.copytree(demo_root, tmp_path / "videos")
    example = readme_example(0)
    call = 'cache="out")'
    assert example.count(call) == 1, "the README example's first load_config call changed: update this test"
    tiny = ", ".join(f"{section}={values!r}" for section, values in TINY.items())
    script = example.replace(call, f'cache="out", {tiny})') + (
        "\nassert len(manifest) == 28 and set(manifest.status) == {'ok'}\n"
        "assert len(fs.ids) == 28 and {'acc', 'macro_f1'} <= set(run.metrics)\n"
        "assert 0 <= test['acc'] <= 1 and list(pred.status) == ['ok']\n"
        "print('example ok', type(fs).__module__, type(run).__module__)\n"
    )
    (tmp_path / "example.py").write_text(script)
    out = run(python, "example.py", cwd=tmp_path, env=env)
    assert "example ok vidprobe.features.store vidprobe.access" in out
