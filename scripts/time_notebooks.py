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


def update_readme(data: dict, readme: Path = README) -> bool:
    """Rewrite the block between the markers in the README; False when the README has no markers."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{render_table(data)}\n{END}{tail}")
    return True


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
