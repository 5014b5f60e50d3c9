"""How fast the two MIDI readers of labkit.midi_io are.

Reads every fixture of tests/fixtures/midi/ and a sample of the shipped corpus
(data/midi/**/*.mid, when it is there) with ``reader="symusic"`` and
``reader="note_seq"``, alternating which goes first, in one process; each file
is read ``--repeats`` times by each reader and its best time kept (on a shared
machine, other work only ever adds time). Also
times symusic's parse alone (``Score.from_midi``), to show how much of the
symusic reader is the parse and how much is building the ``NoteSequence``.

Prints a Markdown table and writes it into benchmarks/README.md under
"## MIDI reading" (``--no-write`` only prints).

    python benchmarks/midi_read.py                 # fixtures + 100 corpus files, 5 repeats
    python benchmarks/midi_read.py --sample 0      # fixtures only

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from labkit.errors import LabkitError
from labkit.midi_io import read_midi

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "midi"
CORPUS = ROOT / "data" / "midi"
README = ROOT / "benchmarks" / "README.md"
HEADING = "## MIDI reading"


def corpus_sample(size: int, seed: int) -> list[Path]:
    """``size`` corpus files drawn without replacement by a seeded generator (all if fewer)."""
    files = sorted(CORPUS.glob("**/*.mid"))
    if size >= len(files):
        return files
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), size, replace=False))]


def time_file(path: Path, repeats: int, first: str) -> dict[str, float] | None:
    """Best milliseconds of each reader (and of symusic's parse alone) on one file; None if unreadable."""
    import symusic

    order = ["symusic", "note_seq"] if first == "symusic" else ["note_seq", "symusic"]
    times = {"symusic": [], "note_seq": [], "parse": []}
    data = path.read_bytes()
    try:
        for _ in range(repeats):
            for reader in order:
                start = time.perf_counter()
                read_midi(path, reader=reader)
                times[reader].append(time.perf_counter() - start)
            start = time.perf_counter()
            symusic.Score.from_midi(data)
            times["parse"].append(time.perf_counter() - start)
            order.reverse()  # alternate which reader goes first
    except LabkitError as exc:
        print(f"  skipped {exc}")
        return None
    return {key: 1e3 * min(values) for key, values in times.items()}


def summarize(name: str, rows: list[dict]) -> str:
    """One Markdown table row for a group of files."""
    sym = np.array([r["symusic"] for r in rows])
    ref = np.array([r["note_seq"] for r in rows])
    parse = np.array([r["parse"] for r in rows])
    return (f"| {name} | {len(rows)} | {np.median(ref):.2f} | {np.median(sym):.2f} | {np.median(parse):.3f} "
            f"| {np.median(ref / sym):.1f}x | {ref.sum() / sym.sum():.1f}x "
            f"| {(ref / sym).min():.1f}x - {(ref / sym).max():.1f}x | {np.median(ref / parse):.0f}x |")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores, {model}; Python {platform.python_version()}, "
            f"symusic {version('symusic')}, note-seq {version('note-seq')}, pretty_midi {version('pretty_midi')}; "
            f"load average {load:.1f} when the run started")


def write_section(text: str) -> None:
    """Put ``text`` (starting with HEADING) into README, replacing an older version of the section."""
    old = README.read_text() if README.exists() else "# Benchmarks\n\nSpeed and quality benchmarks.\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    README.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=100, help="corpus files to read (default 100; 0: none)")
    parser.add_argument("--repeats", type=int, default=5, help="reads of each file by each reader (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus sample")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    args = parser.parse_args(argv)

    groups = {"fixtures (tests/fixtures/midi)": sorted(FIXTURES.glob("*.mid")),
              "corpus sample (data/midi)": corpus_sample(args.sample, args.seed) if args.sample > 0 else []}
    read_midi(next(iter(groups.values()))[0])  # import symusic and note_seq before timing
    results = {}
    for name, files in groups.items():
        if not files:
            continue
        print(f"{name}: {len(files)} files")
        rows = []
        for i, path in enumerate(files):
            row = time_file(path, args.repeats, "symusic" if i % 2 == 0 else "note_seq")
            if row is not None:
                rows.append(row)
        results[name] = rows

    lines = [HEADING, "",
             "`python benchmarks/midi_read.py` reads each file with both readers of "
             "`labkit.midi_io.read_midi`, alternating which goes first, "
             f"{args.repeats} times each, and keeps each file's best time; the table gives the median over "
             "the files. Speed-up is note_seq's time over the symusic reader's. "
             "*parse only* is symusic's `Score.from_midi` alone: the rest of the symusic reader's "
             "time is building the `NoteSequence` (one protobuf message per note).", "",
             f"Machine: {machine()}.", "",
             "| files | n | note_seq ms/file (median) | symusic ms/file (median) | symusic parse only ms "
             "| speed-up (median per file) | speed-up (total time) | speed-up (range) "
             "| parse only vs note_seq (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [summarize(name, rows) for name, rows in results.items() if rows]
    lines.append("")
    table = "\n".join(lines)
    print()
    print(table)
    if not args.no_write:
        write_section(table)
        print(f"written to {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
