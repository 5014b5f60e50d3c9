"""The package as students install it: a wheel (what Colab's ``pip install "labkit @ git+URL"`` builds) holds
every module, command group and asset of the clone, builds without warnings, and has one version number."""
from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import labkit
from labkit import cli

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _tracked(prefix: str) -> list[str]:
    # committed files and new ones not yet committed (but not ignored ones such as __pycache__)
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", prefix],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if (ROOT / f).is_file()]


def test_every_folder_of_the_package_and_the_corpus_is_named_in_pyproject():
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    def with_parents(parts):
        return {".".join(parts[:n]) for n in range(1, len(parts) + 1)}

    folders = set()
    for f in _tracked("labkit"):
        folders |= with_parents(Path(f).parent.parts)
    for f in _tracked("data"):
        folders |= with_parents(("labkit_data",) + Path(f).parent.parts[1:])
    assert {"labkit", "labkit.commands", "labkit_data"} <= folders
    assert folders <= packages, f"folders missing from pyproject.toml's packages: {sorted(folders - packages)}"
    assert packages <= folders, f"pyproject.toml names packages that are gone: {sorted(packages - folders)}"


def test_every_command_group_imports_and_registers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        assert callable(importlib.import_module(f"labkit.commands.{name}").register)


def test_one_version_number():
    assert labkit.__version__ == PYPROJECT["project"]["version"] == importlib.metadata.version("labkit")
    out = subprocess.run([sys.executable, "-m", "labkit", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"labkit {labkit.__version__}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                            str(ROOT)], capture_output=True, text=True, cwd=out)
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(out.glob("labkit-*.whl"))
    assert len(wheels) == 1
    return wheels[0], build.stdout + build.stderr


def test_the_wheel_holds_every_tracked_module_and_asset(wheel):
    path, _ = wheel
    names = set(zipfile.ZipFile(path).namelist())
    wanted = [f for f in _tracked("labkit") if not f.endswith("README.md")]
    missing = [f for f in wanted if f not in names]
    assert not missing, f"the wheel lacks {missing[:10]}"
    corpus = [f"labkit_data/{f[len('data/'):]}" for f in _tracked("data") if f.endswith((".mid", ".csv"))]
    assert corpus and not [f for f in corpus if f not in names]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(path).read(meta).decode()
    assert "License-Expression: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_wheel_builds_without_warnings(wheel):
    _, log = wheel
    lines = [line for line in log.splitlines() if "warning" in line.lower()
             # pip's own notes on this machine's extra package indexes are not the build's
             and "Location 'file://" not in line]
    assert not lines, "\n".join(lines[:20])
