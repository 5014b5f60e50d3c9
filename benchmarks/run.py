"""Run every benchmark in benchmarks/ and print a summary.

Each benchmark (every ``benchmarks/*.py`` with a ``main``, except this file) runs in its own
Python process, one after the other, so that each sets its own threads and environment.
Each writes its own section of benchmarks/README.md (``--no-write``: none does).

    python benchmarks/run.py             # everything (about 6-8 minutes on 2 cores)
    python benchmarks/run.py --quick     # fewer rounds and files (about 3-4 minutes)
    python benchmarks/run.py lstm_sample # only the named benchmarks

``make bench`` runs this file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Arguments for ``--quick``, per benchmark; benchmarks not listed get ``--quick``.
QUICK_ARGS = {"midi_read": ["--sample", "20", "--repeats", "3"]}
#: Benchmarks that write a JSON report with ``--json PATH`` (the others are summarized by their last lines).
JSON_REPORTS = {"lstm_train", "lstm_sample"}


def discover() -> list[str]:
    """Names of the benchmark scripts: benchmarks/*.py that define ``main``, this file excluded."""
    names = []
    for path in sorted(HERE.glob("*.py")):
        if path.name == Path(__file__).name or path.name.startswith("_"):
            continue
        if "def main(" in path.read_text():
            names.append(path.stem)
    return names


def summarize_json(report: dict) -> list[str]:
    lines = [f"  load average {report['load_start']:.1f} -> {report['load_end']:.1f}; "
             f"matmul peak {report['peak']['peak_gflops']:.1f} GFLOP/s"]
    for name, r in report["results"].items():
        ratio = f", {r['ratio_vs_torch']['median']:.2f}x torch" if "ratio_vs_torch" in r else ""
        lines.append(f"  {name:18s} {r['tokens_per_s']['median']:>9,.0f} tokens/s "
                     f"({r['tokens_per_s']['min']:,.0f} - {r['tokens_per_s']['max']:,.0f}), "
                     f"{r['percent_of_peak']:.0f}% of peak{ratio}")
    return lines


def run_one(name: str, quick: bool, write: bool) -> tuple[int, float, list[str]]:
    """Run one benchmark; return (exit status, seconds, summary lines)."""
    args = [sys.executable, str(HERE / f"{name}.py")]
    if quick:
        args += QUICK_ARGS.get(name, ["--quick"])
    if not write:
        args.append("--no-write")
    report_path = None
    if name in JSON_REPORTS:
        handle, report_path = tempfile.mkstemp(suffix=".json", prefix=f"{name}-")
        os.close(handle)
        args += ["--json", report_path]
    print(f"=== {name}: {' '.join(args[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
    tail = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        tail = (tail + [line.rstrip("\n")])[-12:]
    status = proc.wait()
    seconds = time.perf_counter() - start
    summary = []
    if status == 0 and report_path:
        try:
            summary = summarize_json(json.loads(Path(report_path).read_text()))
        except (OSError, ValueError, KeyError) as error:
            summary = [f"  (no readable report: {error})"]
    elif status == 0:
        summary = ["  " + line for line in tail if line.startswith("|")][-4:]
    else:
        summary = [f"  FAILED with exit status {status}; last output:"] + ["    " + line for line in tail[-5:]]
    if report_path:
        Path(report_path).unlink(missing_ok=True)
    return status, seconds, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--no-write", action="store_true", help="leave benchmarks/README.md alone")
    args = parser.parse_args(argv)
    available = discover()
    names = args.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")

    results = {name: run_one(name, args.quick, not args.no_write) for name in names}
    print("\n=== summary")
    for name, (status, seconds, summary) in results.items():
        print(f"{name} ({'ok' if status == 0 else 'FAILED'}, {seconds:.0f} s)")
        for line in summary:
            print(line)
    if not args.no_write:
        readme = HERE / "README.md"
        if readme.exists():   # each benchmark rewrote its own section; keep one blank line between them
            text = readme.read_text()
            tidy = re.sub(r"\n+(?=## )", "\n\n", text).strip("\n") + "\n"
            if tidy != text:
                readme.write_text(tidy)
        print("tables written to benchmarks/README.md")
    return 0 if all(status == 0 for status, _, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
