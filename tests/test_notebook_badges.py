"""Every notebook opens in Colab: its first cell is an "Open in Colab" badge for its own path, and its Colab
install cell installs from the same repository, both from labkit.env.REPOSITORY_URL (set in one place)."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit import env

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BADGE = re.compile(r"^\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\((\S+)\)$")


def test_colab_url_is_built_from_the_repository_url():
    owner_repo = env.REPOSITORY_URL.removeprefix("https://github.com/")
    assert env.REPOSITORY_URL.startswith("https://github.com/") and owner_repo.count("/") == 1
    assert env.colab_url("x.ipynb") == (f"https://colab.research.google.com/github/{owner_repo}"
                                        f"/blob/{env.REPOSITORY_BRANCH}/notebooks/x.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_is_a_colab_badge_for_this_notebook(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell is not markdown"
    match = BADGE.match(first.source.strip())
    assert match, f"{path.name}: the first cell is not an Open-in-Colab badge: {first.source[:80]!r}"
    assert match.group(1) == env.colab_url(path.name), f"{path.name}: the badge points at {match.group(1)}"
    assert first.metadata.get("slideshow", {}).get("slide_type") == "skip", f"{path.name}: badge cell on a slide"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_cell_uses_the_same_repository(path):
    nb = nbformat.read(path, as_version=4)
    install = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
    assert install, f"{path.name}: no Colab install cell"
    urls = re.findall(r'REPO_URL = "([^"]+)"', install[0].source)
    assert urls == [env.REPOSITORY_URL], f"{path.name}: REPO_URL {urls} is not labkit.env.REPOSITORY_URL"


# Times: one source, notebooks/timings.json (scripts/time_notebooks.py), read by the README and the notebooks.

def _time_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "time_notebooks.py"
    spec = importlib.util.spec_from_file_location("time_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_has_a_measured_fast_time():
    times = env.notebook_times()["notebooks"]
    assert sorted(times) == [p.stem for p in NOTEBOOKS]
    assert all(t["fast_seconds"] > 0 and t.get("full_kind", "measured") in ("measured", "estimate")
               for t in times.values())


def test_readme_table_is_rendered_from_timings_json():
    script = _time_script()
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split(script.BEGIN, 1)[1].split(script.END, 1)[0].strip()
    assert block == script.render_table(env.notebook_times()).strip()


def test_readme_syllabus_is_rendered_from_timings_json():
    script = _time_script()
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split(script.SYLLABUS_BEGIN, 1)[1].split(script.SYLLABUS_END, 1)[0].strip()
    assert block == script.render_syllabus(env.notebook_times()).strip()
    # every notebook belongs to exactly one unit, and each unit's time is the sum of its notebooks'
    numbers = [n for _, main, optional, _, _ in script.UNITS for n in main + optional]
    assert sorted(numbers) == [p.name[:2] for p in NOTEBOOKS]
    fake = {"notebooks": {f"{n}_x": {"fast_seconds": 1, "full_seconds": 60, "full_kind": "measured"} for n in numbers}}
    assert "| 3 min |" in script.render_syllabus(fake).splitlines()[2]       # unit 1: three notebooks of 60 s


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prints_its_own_time_and_writes_none_by_hand(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if path.name.startswith("00"):
        assert "env.notebook_times()" in code
    else:
        assert f'notebook_time("{path.stem}")' in code, f"{path.name}: does not print its measured time"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"\*\*Time:\*\*[^\n]*\d+\s*(min|seconds)", prose), f"{path.name}: a time written by hand"


def test_time_line_reads_the_json(tmp_path, monkeypatch):
    (tmp_path / "timings.json").write_text('{"machine": "m", "notebooks": {"99_x": {"fast_seconds": 30, '
                                           '"full_seconds": 600, "full_kind": "estimate"}}}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(env, "__file__", str(tmp_path / "pkg" / "env.py"))  # no repository notebooks/ folder
    assert env.notebook_time("99_x") == "99_x: 30 s with LABKIT_FAST=1, 10 min in the full setting (estimated) on m"
    assert "no measured time" in env.notebook_time("98_y")
