"""Measure how long each notebook takes, and write the figures to notebooks/timings.json.

Notebook times were quoted in four places (notebook 00's table, the README, each notebook's
header) and disagreed. This script is the one source: it runs each notebook top to bottom
the way the tests do (``pytest --nbval-lax --nbval-current-env``), in fast mode
(``LABKIT_FAST=1``) and, with ``--full``, in the full setting, and records the wall-clock
seconds, the machine and the date. Notebook 00, the README's table and every notebook read
the JSON (``labkit.env.notebook_time``) instead of writing their own figures.

    python scripts/time_notebooks.py                       # fast mode, every notebook
    python scripts/time_notebooks.py --full 00 01 02       # full mode, some notebooks
    python scripts/time_notebooks.py --estimate 04=900     # a full-mode estimate, marked as such

Entries not measured in a run keep their previous values. A full-mode figure that was not
measured may be given with ``--estimate NN=SECONDS`` and is stored with ``"full_kind":
"estimate"`` so that readers say so.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TIMINGS = NOTEBOOKS / "timings.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- notebook-times: written by scripts/time_notebooks.py -->", "<!-- /notebook-times -->"
SYLLABUS_BEGIN, SYLLABUS_END = "<!-- syllabus: written by scripts/time_notebooks.py -->", "<!-- /syllabus -->"
#: The course's units: (unit, notebooks, optional notebooks, assignment, prerequisites). The README's syllabus
#: is rendered from it with each unit's time summed from notebooks/timings.json.
UNITS = (
    ("1. MIDI and preprocessing", ("00", "01", "02"), (), "a1", "Python, NumPy; reading music helps, not required"),
    ("2. Recurrent networks and attention", ("03", "04", "11"), (), "a2",
     "unit 1; derivatives and the chain rule (11, attention, comes after 04)"),
    ("3. Sampling", ("05",), (), "a3", "unit 2; probability (softmax, sampling)"),
    ("4. Style", ("06", "07"), ("12",), "a4", "unit 1; logistic regression is built in 07"),
    ("5. Polyphony and harmony", ("08",), (), "a5", "units 2-3"),
    ("6. Judging and generating to order", ("09",), (), "a6", "units 3-4"),
    ("7. Mixing and performance", ("10",), (), "a7", "unit 3; decibels are explained in 10 (+ `make app`)"),
)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def render_table(data: dict) -> str:
    """The README's table of notebook times, from the JSON (so the two cannot disagree)."""
    lines = ["| notebook | fast mode (`LABKIT_FAST=1`) | full setting |", "|---|---|---|"]
    for name, entry in data.get("notebooks", {}).items():
        fast = _minutes(entry["fast_seconds"]) if "fast_seconds" in entry else "-"
        full = "-"
        if "full_seconds" in entry:
            full = _minutes(entry["full_seconds"]) + (" (estimate)" if entry.get("full_kind") == "estimate" else "")
        lines.append(f"| `{name}` | {fast} | {full} |")
    lines.append(f"\nMeasured on {data.get('machine', '?')} ({data.get('how', '')}).")
    return "\n".join(lines)


def _unit_seconds(data: dict, numbers) -> tuple[float, bool]:
    """Sum of the full-setting seconds of ``numbers`` (fast seconds where a notebook has no full time), and
    whether every figure in the sum is a measurement."""
    entries = {name[:2]: entry for name, entry in data.get("notebooks", {}).items()}
    total, measured = 0.0, True
    for number in numbers:
        entry = entries.get(number, {})
        total += entry.get("full_seconds", entry.get("fast_seconds", 0.0))
        measured &= "full_seconds" in entry and entry.get("full_kind", "measured") == "measured"
    return total, measured


def render_syllabus(data: dict) -> str:
    """The README's syllabus, one row per unit of :data:`UNITS`, its CPU time summed from the JSON."""
    lines = ["| unit | notebooks | slides (`make slides`: `slides/build/NN_*.slides.html`) | assignment | "
             "time on a 2-core CPU (full setting) "
             "| time on a GPU | prerequisites |", "|---|---|---|---|---|---|---|"]
    for unit, numbers, optional, assignment, needs in UNITS:
        seconds, measured = _unit_seconds(data, numbers)
        cpu = _minutes(seconds) + ("" if measured else " (partly estimated)")
        if optional:
            extra, extra_measured = _unit_seconds(data, optional)
            cpu += f" (+ {_minutes(extra)}{'' if extra_measured else ', estimated'} for {', '.join(optional)})"
        shown = ", ".join(numbers) + (f", {', '.join(optional)} (optional)" if optional else "")
        slides = ", ".join(numbers + optional)
        lines.append(f"| {unit} | {shown} | `{slides}` | {assignment} | {cpu} | not measured | {needs} |")
    return "\n".join(lines)


def _replace_block(text: str, begin: str, end: str, body: str) -> str | None:
    if begin not in text or end not in text:
        return None
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def update_readme(data: dict, readme: Path = README) -> bool:
    """Rewrite the blocks between the markers in the README (times, syllabus); False when it has none."""
    text = readme.read_text()
    changed = False
    for begin, end, body in ((BEGIN, END, render_table(data)),
                             (SYLLABUS_BEGIN, SYLLABUS_END, render_syllabus(data))):
        new = _replace_block(text, begin, end, body)
        if new is not None:
            text, changed = new, True
    if changed:
        readme.write_text(text)
    return changed


def run_notebook(path: Path, fast: bool) -> tuple[float, bool]:
    """Run one notebook as the tests do; return (seconds, passed)."""
    env = dict(os.environ)
    if fast:
        env["LABKIT_FAST"] = "1"
    else:
        env.pop("LABKIT_FAST", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
           str(path)]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-2000:], sep="\n", file=sys.stderr)
    return seconds, result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers (00, 04, ...); default all")
    parser.add_argument("--full", action="store_true", help="full mode (LABKIT_FAST unset) instead of fast mode")
    parser.add_argument("--estimate", action="append", default=[], metavar="NN=SECONDS",
                        help="record a full-mode estimate (not a measurement) for notebook NN")
    parser.add_argument("--estimate-source", default=None,
                        help="where the --estimate figures come from (stored with them)")
    args = parser.parse_args(argv)

    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {"notebooks": {}}
    entries = data.setdefault("notebooks", {})
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if not args.notebooks or p.name[:2] in args.notebooks]
    today = dt.date.today().isoformat()
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"
    failed, touched = [], set()
    for item in args.estimate:
        number, _, seconds = item.partition("=")
        name = next(p.stem for p in paths if p.name.startswith(number))
        entry = entries.setdefault(name, {})
        entry.update(full_seconds=round(float(seconds)), full_kind="estimate")
        touched.add(name)
        if args.estimate_source:
            entry["full_source"] = args.estimate_source
    if args.estimate and not args.notebooks:
        chosen = []
    for path in chosen:
        seconds, ok = run_notebook(path, fast=not args.full)
        entry = entries.setdefault(path.stem, {})
        touched.add(path.stem)
        key = "full" if args.full else "fast"
        entry[f"{key}_seconds"] = round(seconds)
        entry[f"{key}_measured"] = today
        if args.full:
            entry["full_kind"] = "measured"
            entry.pop("full_source", None)
        print(f"{path.name:40s} {'full' if args.full else 'fast'} {seconds:7.1f} s {'ok' if ok else 'FAILED'}")
        if not ok:
            failed.append(path.name)
    # merge into the file as it is now (another run may have written it meanwhile): only what we measured
    current = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {"notebooks": {}}
    for name in touched:
        current.setdefault("notebooks", {}).setdefault(name, {}).update(entries[name])
    data, entries = current, current["notebooks"]
    data["machine"] = machine
    data["how"] = "python scripts/time_notebooks.py [--full]: pytest --nbval-lax per notebook, wall-clock seconds"
    data["notebooks"] = dict(sorted(entries.items()))
    tmp = TIMINGS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(TIMINGS)
    update_readme(data)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
