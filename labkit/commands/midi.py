"""``python -m labkit midi inspect FILE...``: what MIDI files hold, and the melodies in them.

For each file: the header (format, tracks, ticks per quarter note), the
duration, the notes, the instruments, the tempo map, time and key
signatures, and the melodies that :func:`labkit.melody.extract_melodies`
finds. A folder stands for every MIDI file under it
(:func:`labkit._common.find_midi_files`). An entry that cannot be read (a bad
file, a broken or looping link, a folder named like a MIDI file) gets one line
on stderr naming it and the problem (with ``--json`` also one ``{"file",
"error"}`` object); the others are still reported. Names are printed with
:func:`labkit._common.display_name`. The exit status is 0 when every file could
be read (even one with no melody in it), 2 otherwise.

Example::

    python -m labkit midi inspect song.mid other.mid
    python -m labkit midi inspect --json data/midi/*/*.mid > report.jsonl

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys

from labkit._common import display_name, find_midi_files
from labkit.errors import LabkitError
from labkit.midi_io import READERS, describe, read_header, read_midi, require_notes


def register(subparsers) -> None:
    """Add the ``midi`` command group to ``python -m labkit``."""
    parser = subparsers.add_parser("midi", help="inspect MIDI files",
                                   description="Look inside MIDI files.")
    actions = parser.add_subparsers(dest="midi_action", metavar="ACTION")
    inspect = actions.add_parser(
        "inspect", help="tracks, instruments, tempo, duration, notes and melodies of MIDI files",
        description="Print what each MIDI file holds and the melodies found in it. "
                    "Exit status 2 if any file cannot be read.")
    inspect.add_argument("files", nargs="+", metavar="PATH",
                         help="MIDI files, or folders searched recursively for .mid/.midi/.kar files")
    inspect.add_argument("--json", action="store_true", help="print one JSON object per file, one per line")
    inspect.add_argument("--steps-per-quarter", type=_positive_int, default=4, metavar="N",
                         help="grid of the melody extraction, 1..96 steps per quarter (default: 4, sixteenth notes)")
    inspect.add_argument("--reader", choices=READERS, default="auto",
                         help="MIDI reader (default: auto = symusic)")
    inspect.set_defaults(func=_inspect)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _positive_int(text: str) -> int:
    """``--steps-per-quarter``: an integer in 1..:data:`labkit.commands._args.MAX_STEPS_PER_QUARTER`."""
    from labkit.commands._args import MAX_STEPS_PER_QUARTER

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_STEPS_PER_QUARTER}, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_STEPS_PER_QUARTER:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_STEPS_PER_QUARTER}, got {text!r}")
    return value


def _inspect(args) -> int:
    """Handler of ``midi inspect``: report every entry; 2 if any could not be read, else 0."""
    status = 0
    for path, problem in find_midi_files(args.files):
        try:
            if problem:
                raise LabkitError(problem, path)
            report = inspect_file(path, steps_per_quarter=args.steps_per_quarter, reader=args.reader)
        except LabkitError as exc:
            status = 2
            if args.json:
                print(json.dumps({"file": display_name(path), "error": display_name(exc.problem)}), flush=True)
            print(f"labkit: {display_name(str(exc))}", file=sys.stderr, flush=True)
            continue
        print(json.dumps(report) if args.json else format_report(report), flush=True)
    return status


def inspect_file(path, *, steps_per_quarter: int = 4, reader: str = "auto") -> dict:
    """Everything ``midi inspect`` reports about one file, as a dict.

    The keys of :func:`labkit.midi_io.describe`, plus ``format`` and
    ``num_tracks`` (from the header), ``steps_per_quarter``, ``melodies``
    (a list of ``{notes, steps, lowest_pitch, highest_pitch}``, or ``None``
    when melody extraction is not available) and ``melody_problem`` (why
    there is no melody, or ``None``).

    Raises the :class:`~labkit.errors.LabkitError` of :func:`read_midi` for a
    file that cannot be read.

    Notebook: 01_midi_and_notesequences.ipynb
    """
    header = read_header(path)
    sequence = read_midi(path, reader=reader)
    report = {"file": display_name(path), "format": header.format, "num_tracks": header.num_tracks}
    report.update((key, value) for key, value in describe(sequence).items() if key != "file")
    report["steps_per_quarter"] = steps_per_quarter
    report["melodies"], report["melody_problem"] = _melodies(sequence, steps_per_quarter)
    return report


def _melodies(sequence, steps_per_quarter: int) -> tuple[list | None, str | None]:
    """``(melodies, problem)``: the melodies as dicts, or why there are none."""
    try:
        require_notes(sequence)
    except LabkitError as exc:
        return [], f"no melody: {exc.problem}"
    try:
        from labkit.melody import extract_melodies
    except ImportError:
        return None, "melody extraction not available"
    try:
        melodies = extract_melodies(sequence, steps_per_quarter=steps_per_quarter)
    except LabkitError as exc:  # NoNotesError, NoMelodyError, or values the quantizer rejects
        return [], f"no melody: {exc.problem}"
    return [{"notes": int(len(m.pitches)), "steps": m.num_steps,
             "lowest_pitch": int(m.pitches.min()), "highest_pitch": int(m.pitches.max())}
            for m in melodies], None


def format_report(report: dict) -> str:
    """The text that ``midi inspect`` prints for one file (``report`` from :func:`inspect_file`)."""
    lines = [report["file"],
             f"  MIDI format {report['format']}, {_count(report['num_tracks'], 'track')}, "
             f"{report['ticks_per_quarter']} ticks per quarter note",
             f"  duration {report['duration_seconds']:.1f} s, {_count(report['num_notes'], 'note')}"
             + (f" ({report['num_drum_notes']} on drums)" if report["num_drum_notes"] else ""),
             "  " + _tempo_line(report["tempos"])]
    signatures = [_changes("time signature", [f"{t['numerator']}/{t['denominator']}"
                                              for t in report["time_signatures"]]),
                  _changes("key signature", [f"{k['key']} {k['mode']}" for k in report["key_signatures"]])]
    lines.append("  " + ", ".join(signatures))

    instruments = report["instruments"]
    lines.append(f"  {_count(len(instruments), 'instrument')}" + (":" if instruments else ""))
    for inst in instruments:
        program = "drums" if inst["is_drum"] else f"{inst['program']:3d} {inst['program_name']}"
        lines.append(f"    {inst['instrument']:3d}  {inst['name'][:20]:20s}  {program:30s}"
                     f"  {_count(inst['num_notes'], 'note'):>11s}, "
                     f"pitches {inst['lowest_pitch']}-{inst['highest_pitch']}")

    melodies = report["melodies"]
    if report["melody_problem"]:
        lines.append(f"  {report['melody_problem']}")
    else:
        lines.append(f"  {_count(len(melodies), 'melody', 'melodies')} "
                     f"at {report['steps_per_quarter']} steps per quarter note:")
        for i, melody in enumerate(melodies, 1):
            lines.append(f"    {i:3d}: {_count(melody['notes'], 'note')}, {_count(melody['steps'], 'step')}, "
                         f"pitches {melody['lowest_pitch']}-{melody['highest_pitch']}")
    return "\n".join(lines)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 note"``, ``"3 notes"``."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def _tempo_line(tempos: list[dict]) -> str:
    if not tempos:
        return "no tempo (120 qpm assumed)"
    first = f"tempo {tempos[0]['qpm']:.4g} qpm"
    if len(tempos) == 1:
        return first
    qpms = [t["qpm"] for t in tempos]
    return (f"{first} at the start, {_count(len(tempos) - 1, 'change')} "
            f"(between {min(qpms):.4g} and {max(qpms):.4g} qpm)")


def _changes(what: str, values: list[str]) -> str:
    """``"time signature 4/4"``, ``"time signature 8/4, 5 changes (3/4, 8/4)"`` or ``"no time signature"``."""
    if not values:
        return f"no {what}"
    if len(values) == 1:
        return f"{what} {values[0]}"
    distinct = list(dict.fromkeys(values))
    return f"{what} {values[0]}, {_count(len(values) - 1, 'change')} ({', '.join(distinct)})"
