"""Prose a student reads in a minute: every markdown cell of every notebook has at most 200 words, and no
notebook states its own run time by hand against the measured one (issue 19, items 2 and 5).

How words are counted (``prose_words``): the cell's source, with these removed first, split on whitespace:

* code: fenced blocks (three backticks ... three backticks) and inline code spans (`like_this`);
* LaTeX: display maths ``$$ ... $$`` and inline maths ``$ ... $`` (on one line);
* the URL of a markdown link or image, ``[text](URL)``: the link's text stays and is counted;
* HTML tags (``<br>``, ``<b>``), which are markup, not words.

Everything else that whitespace separates is a word: "2.5", "-", "**Time:**" and "(Hadjeres" count one each.
200 words is about a minute at a student's reading pace of technical text; a longer cell is split in two
(or its list of figures is printed by a code cell as a table).

Run times: notebooks/timings.json (written by scripts/time_notebooks.py) is the one source of each notebook's
time; tests/test_notebook_badges.py already checks that each notebook prints it and writes no **Time:** line
by hand. Here, a sentence of a notebook's prose that speaks of *this notebook* and names a duration ("this
notebook runs in about 10 minutes") must agree with the notebook's measured fast or full time: within a
factor of 1.5 (a range "10-30 minutes" agrees when a measured time falls inside it, widened by that factor).
Durations of commands or trainings ("trains for 2.5 minutes") are not the notebook's own and are not checked.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_WORDS = 200

_FENCED = re.compile(r"```.*?```|~~~.*?~~~", re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$")
_LINK_URL = re.compile(r"\]\([^)]*\)")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")


def prose_words(source: str) -> int:
    """The number of words of a markdown cell, by the rule of this module's docstring.

    >>> prose_words("Two words")
    2
    >>> prose_words("The `code span` and $x + y$ go, [the text](https://example.org/a b) stays")
    6
    >>> prose_words("```python\\nx = 1\\n```\\n$$ a = b $$ one <br> two")
    2
    """
    text = _FENCED.sub(" ", source)
    text = _CODE_SPAN.sub(" ", text)
    text = _DISPLAY_MATH.sub(" ", text)
    text = _INLINE_MATH.sub(" ", text)
    text = _LINK_URL.sub("]", text)
    text = _HTML_TAG.sub(" ", text)
    return len(text.split())


def test_word_rule_removes_code_maths_and_urls_but_counts_the_rest():
    assert prose_words("") == 0
    assert prose_words("one two  three\nfour\tfive") == 5
    assert prose_words("see `a b c d` here") == 2                          # a code span is not prose
    assert prose_words("``with ` inside`` word") == 1                       # double-backtick span
    assert prose_words("where $p_i = e^{z_i} / \\sum_j e^{z_j}$ holds") == 2
    assert prose_words("$$\nH = -\\sum p \\log p\n$$\nbits") == 1           # display maths over lines
    assert prose_words("[Open In Colab](https://colab.example/x.ipynb)") == 3
    assert prose_words("[![badge](https://a/b.svg)](https://c/d)") == 1      # an image inside a link: its alt text
    assert prose_words("costs $5 and $6 more") == 3                         # "$5 and $" is maths: a known limit
    assert prose_words("word " * 201) == 201


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_markdown_cell_reads_in_a_minute(path):
    nb = nbformat.read(path, as_version=4)
    long_cells = [(index, prose_words(cell.source)) for index, cell in enumerate(nb.cells)
                  if cell.cell_type == "markdown" and prose_words(cell.source) > MAX_WORDS]
    assert not long_cells, "; ".join(f"{path.name}: cell {index} has {words} words (at most {MAX_WORDS})"
                                     for index, words in long_cells)


# Run times stated in prose

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s*"
                       r"(hours?|h|minutes?|mins?|min|seconds?|secs?|s)\b", re.I)
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_OWN = re.compile(r"\bthis notebook\b|\bthe whole notebook\b|\bthis lesson\b", re.I)


def stated_run_times(prose: str) -> list[tuple[float, float, str]]:
    """The durations (low, high seconds, the sentence) that sentences about this notebook state.

    >>> stated_run_times("This notebook takes about 10-30 min on a CPU. Training takes 5 minutes.")[0][:2]
    (600.0, 1800.0)
    """
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", prose):
        if not _OWN.search(sentence):
            continue
        for match in _DURATION.finditer(sentence):
            unit = _UNIT_SECONDS[match.group(3)[0].lower()]
            low = float(match.group(1)) * unit
            high = float(match.group(2)) * unit if match.group(2) else low
            found.append((low, high, " ".join(sentence.split())))
    return found


def disagreeing_times(prose: str, entry: dict, factor: float = 1.5) -> list[str]:
    """The sentences of ``prose`` whose stated run time agrees with neither measured time of ``entry``."""
    measured = [entry[k] for k in ("fast_seconds", "full_seconds") if entry.get(k)]
    return [sentence for low, high, sentence in stated_run_times(prose)
            if not any(low / factor <= m <= high * factor for m in measured)]


def test_run_time_check_catches_a_wrong_time_and_passes_a_right_one():
    entry = {"fast_seconds": 94, "full_seconds": 600}
    assert disagreeing_times("This notebook runs in about 10 minutes.", entry) == []
    assert disagreeing_times("This notebook runs in 90 s with LABKIT_FAST=1.", entry) == []
    assert disagreeing_times("This notebook takes 20-30 minutes on a CPU.", entry) == [
        "This notebook takes 20-30 minutes on a CPU."]
    assert disagreeing_times("This notebook needs 1 hour.", entry) == ["This notebook needs 1 hour."]
    assert disagreeing_times("Each model trains for 2.5 minutes. Notebook 04 took 30 min.", entry) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_states_no_run_time_against_the_measured_one(path):
    times = json.loads((ROOT / "notebooks" / "timings.json").read_text())["notebooks"]
    entry = times.get(path.stem, {})
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        wrong = disagreeing_times(cell.source, entry)
        assert not wrong, (f"{path.name}: cell {index} states a run time that notebooks/timings.json "
                           f"({entry}) does not measure: {wrong[0]!r}")
