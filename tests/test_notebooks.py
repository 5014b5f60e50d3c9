"""The notebooks as files: committed without outputs, every section title a slide (slides/README.md)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    ran = [i for i, cell in enumerate(nb.cells)
           if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not ran, f"{path.name}: cells {ran} carry outputs or execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_section_title_starts_a_slide(path):
    nb = nbformat.read(path, as_version=4)
    titles = [cell for cell in nb.cells if cell.cell_type == "markdown" and cell.source.startswith(("# ", "## ", "### "))]
    assert titles, path.name
    missing = [cell.source.splitlines()[0] for cell in titles
               if cell.metadata.get("slideshow", {}).get("slide_type") != "slide"]
    assert not missing, f"{path.name}: section titles without slide metadata: {missing}"
