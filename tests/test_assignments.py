"""The graded assignments (assignments/, nbgrader's course layout) check themselves both ways.

Each assignment is ONE source notebook, assignments/source/<name>/<name>.ipynb, with solutions and hidden
tests in nbgrader's conventions; `make assignments` (nbgrader generate_assignment) writes the student
version to assignments/release/<name>/<name>.ipynb, which is committed so that its "Open in Colab" badge
opens it. Checked here:

* the sources follow nbgrader's conventions (cell metadata, solution and hidden-test delimiters, points);
* students need nothing but the notebook: only NumPy, Matplotlib and the standard library, no nbgrader;
* the first cell is an "Open in Colab" badge for the RELEASE path, built from labkit.env.REPOSITORY_URL;
* built afresh from the sources (in a temporary course folder): the solutions pass every graded test
  (`nbgrader validate`), every graded test of the student version fails until solved
  (`nbgrader validate --invert`), and the committed release is what the sources give. `nbgrader validate`
  exits 0 even when tests fail, so its verdict line is read, not its exit status.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit import env

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
SOURCES = sorted((COURSE / "source").glob("*/*.ipynb"))
NAMES = [p.stem for p in SOURCES]
# What Colab (and any Jupyter) has without installing anything; the assignments import nothing else.
ALLOWED_IMPORTS = {"numpy", "matplotlib", "math", "random", "itertools", "collections", "fractions", "statistics"}
BADGE = re.compile(r"^\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\((\S+)\)$")
# nbgrader's verdicts (nbgrader.validator.Validator): the run's exit status is 0 either way.
ALL_PASS = "Success! Your notebook passes all the tests."
NONE_PASS = "Success! The notebook does not pass any tests."

nbgrader = pytest.importorskip("nbgrader", reason="nbgrader is the instructor's tool: pip install -e '.[dev]'")


def _graded(nb):
    return [c for c in nb.cells if "nbgrader" in c.metadata]


def _nbgrader(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def release_colab_url(name: str) -> str:
    owner_repo = env.REPOSITORY_URL.removeprefix("https://github.com/").rstrip("/")
    return (f"https://colab.research.google.com/github/{owner_repo}/blob/{env.REPOSITORY_BRANCH}"
            f"/assignments/release/{name}/{name}.ipynb")


def test_every_unit_has_an_assignment():
    # The README's syllabus has seven units; assignment aN belongs to unit N.
    assert [n[:3] for n in NAMES] == [f"a{unit}_" for unit in range(1, 8)], NAMES
    assert all(p.parent.name == p.stem for p in SOURCES), "nbgrader's layout: source/<name>/<name>.ipynb"
    assert (COURSE / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_source_follows_nbgrader_conventions(path):
    nb = nbformat.read(path, as_version=4)
    graded = _graded(nb)
    ids = [c.metadata.nbgrader["grade_id"] for c in graded]
    assert len(ids) == len(set(ids)), f"{path.name}: a grade_id twice"
    tests, answers, solutions = 0, 0, 0
    for cell in graded:
        meta = cell.metadata.nbgrader
        where = f"{path.name}: {meta['grade_id']}"
        assert meta["schema_version"] == 3 and {"grade", "solution", "locked"} <= set(meta), where
        if meta["solution"] and cell.cell_type == "code":
            solutions += 1
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, where
            assert not meta["grade"] and not meta["locked"], where
        elif meta["solution"]:                     # a sentence graded by hand ("explain the plot")
            answers += 1
            assert meta["grade"] and meta["points"] > 0, where
        elif meta["grade"]:                        # an autograded test cell: visible asserts, then hidden ones
            tests += 1
            assert cell.cell_type == "code" and meta["locked"] and meta["points"] > 0, where
            visible, _, rest = cell.source.partition("### BEGIN HIDDEN TESTS")
            assert "assert " in visible, f"{where}: no visible self-check"
            assert "### END HIDDEN TESTS" in rest and "assert " in rest, f"{where}: no hidden tests"
    assert tests >= 5 and solutions >= 5 and answers >= 1, (path.name, tests, solutions, answers)
    assert any("ANSWER_" in c.source for c in graded if c.metadata.nbgrader["solution"]), "no 'predict' exercise"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_students_need_nothing_but_the_notebook(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in ALLOWED_IMPORTS, f"{path.name}: imports {module} (not in Colab)"
        assert "nbgrader" not in cell.source and "pip install" not in cell.source, path.name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_first_cell_is_a_colab_badge_for_the_student_version(path):
    first = nbformat.read(path, as_version=4).cells[0]
    match = BADGE.match(first.source.strip())
    assert first.cell_type == "markdown" and match, f"{path.name}: the first cell is not an Open-in-Colab badge"
    assert match.group(1) == release_colab_url(path.stem), f"{path.name}: the badge points at {match.group(1)}"
    assert "nbgrader" not in first.metadata


def test_release_colab_url_is_built_from_the_repository_url():
    assert release_colab_url("a9_x") == env.colab_url("a9_x.ipynb").replace(
        "/notebooks/a9_x.ipynb", "/assignments/release/a9_x/a9_x.ipynb")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh course folder: the sources and the config copied, the student versions generated."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(COURSE / "nbgrader_config.py", course)
    shutil.copytree(COURSE / "source", course / "source")
    _nbgrader("generate_assignment", "*", "--force", "--no-db", "--log-level=WARN", cwd=course)  # as make assignments
    assert sorted(p.name for p in (course / "release").iterdir()) == NAMES
    return course


def _solved(name, built):
    """The student version with each answer cell filled in as the source's solution: a student who solved it."""
    source = nbformat.read(COURSE / "source" / name / f"{name}.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in _graded(source) if c.metadata.nbgrader["solution"]}
    student = nbformat.read(built / "release" / name / f"{name}.ipynb", as_version=4)
    for cell in _graded(student):
        if cell.metadata.nbgrader["solution"]:
            cell.source = "\n".join(line for line in answers[cell.metadata.nbgrader["grade_id"]].splitlines()
                                    if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    path = built / "solved" / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.write(student, path)
    return str(path)


def test_solutions_pass_every_graded_test(built):
    """The sources (visible and hidden tests), and the student versions once solved (visible tests)."""
    paths = [str(built / "source" / n / f"{n}.ipynb") for n in NAMES] + [_solved(n, built) for n in NAMES]
    out = _nbgrader("validate", *paths, cwd=built)
    assert out.count(ALL_PASS) == 2 * len(NAMES) and "FAILED" not in out and "CHANGED" not in out, out


def test_student_versions_fail_every_graded_test_until_solved(built):
    paths = [str(built / "release" / n / f"{n}.ipynb") for n in NAMES]
    out = _nbgrader("validate", "--invert", *paths, cwd=built)
    assert out.count(NONE_PASS) == len(NAMES) and "PASSED ON" not in out, out


@pytest.mark.parametrize("name", NAMES)
def test_student_version_has_no_solution_and_is_committed_up_to_date(built, name):
    fresh = nbformat.read(built / "release" / name / f"{name}.ipynb", as_version=4)
    text = "\n".join(c.source for c in fresh.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    code = "\n".join(c.source for c in fresh.cells if c.cell_type == "code")
    assert code.count("raise NotImplementedError()") == sum(
        1 for c in _graded(fresh) if c.metadata.nbgrader["solution"] and c.cell_type == "code")
    committed_path = COURSE / "release" / name / f"{name}.ipynb"
    assert committed_path.is_file(), f"{committed_path} missing: run make assignments"
    committed = nbformat.read(committed_path, as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in committed.cells] == \
           [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in fresh.cells], \
        f"{committed_path} is out of date with its source: run make assignments"
