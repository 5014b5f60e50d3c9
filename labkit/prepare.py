"""A folder of anyone's MIDI files -> a dataset the course can train on.

:func:`prepare_midi_folder` reads every MIDI file (``.mid``, ``.midi``, ``.kar``) under a folder,
extracts its monophonic melodies (:func:`labkit.melody.extract_melodies`), and
writes them in the corpus layout: ``midi/<collection>/<id>.mid`` plus a
``manifest.csv`` with the corpus's columns, so that
``labkit.data.load_melodies(out_dir)`` and every notebook read it like the
shipped corpus. A file that cannot be read or holds no melody is skipped and
reported; every good file is kept. ``prepare_report.csv`` lists each file with
``ok`` or the reason it was skipped.

Melodies from one file share a split (split by file, never by window), so no
file's tracks land in both training and test data.

Every entry of the folder gets one line: a file that cannot be read, a broken or looping link, a
folder named like a MIDI file (see :func:`labkit._common.find_midi_files`). The output folder is
checked before any file is read (it must be new, empty, or written by ``data prepare`` before; it
may lie inside the MIDI folder, whose search then leaves it out, but not around it), and a re-run
replaces the whole dataset: ``midi/`` as one unit, then ``manifest.csv`` and ``prepare_report.csv``;
no file of an earlier run stays beside a manifest that does not list it.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from labkit._common import (KEY_TONIC_NAMES, MIDI_SUFFIXES, atomic_write, atomic_write_dir, check_output_folder,
                             display_name, find_midi_files)
from labkit.errors import ConfigError, CorpusError, LabkitError


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    status: str  # "ok" or "skipped"
    melodies: int = 0
    reason: str = ""

    def line(self) -> str:
        if self.status == "ok":
            return f"ok       {self.path}: {self.melodies} melod{'y' if self.melodies == 1 else 'ies'}"
        return f"skipped  {self.path}: {self.reason}"


@dataclass
class PrepareReport:
    """The outcome of :func:`prepare_midi_folder`."""

    out_dir: Path
    files: list[FileResult] = field(default_factory=list)

    @property
    def melodies(self) -> int:
        return sum(f.melodies for f in self.files)

    @property
    def ok(self) -> int:
        return sum(f.status == "ok" for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f.status == "skipped" for f in self.files)

    def summary(self) -> str:
        return (f"{self.ok} of {len(self.files)} files gave {self.melodies} melodies; "
                f"{self.skipped} skipped; dataset in {display_name(self.out_dir)}")


def prepare_midi_folder(midi_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                        style: str = "user", collection: str | None = None,
                        steps_per_quarter: int = 4, min_notes: int = 8,
                        max_gap_quarters: float = 4.0, strategy: str = "instrument",
                        progress=None) -> PrepareReport:
    """Turn a folder of MIDI files into a corpus-layout dataset in ``out_dir``.

    Args:
        midi_dir: folder searched recursively for ``.mid``, ``.midi`` and ``.kar`` files.
        out_dir: where ``manifest.csv``, ``midi/`` and ``prepare_report.csv`` are written.
        style: the style label of every melody (the manifest's ``style`` column).
        collection: the collection name (default: the folder's name, as a slug).
        steps_per_quarter, min_notes, max_gap_quarters, strategy: passed to
            :func:`labkit.melody.extract_melodies`.
        progress: optional callable given each :class:`FileResult` as it is made.

    Returns:
        A :class:`PrepareReport`; ``report.melodies == 0`` means nothing usable was found.

    Raises:
        ConfigError: ``midi_dir`` is not a folder; ``out_dir`` cannot be written, is a file, holds
            files that are not an earlier dataset of this function, or holds ``midi_dir``.
        CorpusError: ``midi_dir`` holds no MIDI file (outside ``out_dir``).

    Example:
        >>> report = prepare_midi_folder("my_midi", "my_dataset")      # doctest: +SKIP
        >>> mels = labkit.data.load_melodies("my_dataset")             # doctest: +SKIP

    Notebook: 02_preprocessing.ipynb
    """
    from labkit.corpus import MANIFEST_COLUMNS, split_of
    from labkit.melody import extract_melodies, melody_to_sequence
    from labkit.midi_io import read_midi, write_midi

    midi_root = Path(midi_dir)
    out = Path(out_dir)
    collection = _slug(collection or midi_root.resolve().name).replace("-", "")
    if not midi_root.is_dir():
        raise ConfigError("not a folder", midi_root)
    _check_out(out, midi_root)                     # before the work: never after minutes of reading
    found = _inputs(midi_root, out)
    if len(found) == 1 and found[0][0] == os.fspath(midi_root) and found[0][1]:   # nothing to read
        raise CorpusError(f"no MIDI files ({', '.join(MIDI_SUFFIXES)}) in this folder", midi_root)
    report = PrepareReport(out)
    rows = []

    def fill(tmp: Path) -> None:
        """Read every entry, write the melodies under ``tmp`` (the new ``midi/``)."""
        used_ids: set[str] = set()
        for raw, problem in found:
            path = Path(raw)
            rel = path.relative_to(midi_root).as_posix() if path != midi_root else path.name
            shown = display_name(rel)
            try:
                if problem:
                    raise LabkitError(problem, raw)
                sequence = read_midi(path)
                melodies = extract_melodies(sequence, steps_per_quarter=steps_per_quarter, min_notes=min_notes,
                                            max_gap_quarters=max_gap_quarters, strategy=strategy)
            except LabkitError as exc:
                result = FileResult(shown, "skipped", reason=display_name(exc.problem))
            else:
                base = f"{collection}-{_slug(rel.rsplit('.', 1)[0])}"
                while base in used_ids:  # two files whose names slug alike
                    base += "-x"
                used_ids.add(base)
                split = split_of(base)
                for k, melody in enumerate(melodies, start=1):
                    tune_id = f"{base}-m{k}"
                    midi_rel = f"midi/{collection}/{tune_id}.mid"
                    write_midi(melody_to_sequence(melody), tmp / collection / f"{tune_id}.mid")
                    quarters = melody.num_steps / melody.steps_per_quarter
                    rows.append({
                        "id": tune_id, "collection": collection,
                        "subset": display_name(str(Path(rel).parent)).replace(".", ""),
                        "style": style, "title": display_name(path.stem), "source": shown, "index": k,
                        "catalogue": "", "meter": f"{melody.numerator}/{melody.denominator}",
                        "key": f"{_key_name(melody.key)} {melody.mode}", "notes": len(melody.pitches),
                        "duration_quarters": f"{quarters:g}",
                        "duration_seconds": f"{quarters * 60.0 / melody.qpm:.3f}",
                        "path": midi_rel, "split": split,
                    })
                result = FileResult(shown, "ok", melodies=len(melodies))
            report.files.append(result)
            if progress:
                progress(result)
        # The new set is complete: the old manifest goes first, so no manifest ever lists the wrong files.
        (out / "manifest.csv").unlink(missing_ok=True)

    atomic_write_dir(out / "midi", fill)           # the whole midi/ replaced as one unit
    if rows:
        _write_csv(out / "manifest.csv", rows, MANIFEST_COLUMNS)
    _write_csv(out / "prepare_report.csv",
               [{"file": f.path, "status": f.status, "melodies": f.melodies, "reason": f.reason}
                for f in report.files], ("file", "status", "melodies", "reason"))
    return report


#: The files ``data prepare`` writes in its output folder; a re-run replaces them all.
OUTPUT_FILES = ("manifest.csv", "prepare_report.csv")


def _check_out(out: Path, midi_root: Path) -> None:
    """Refuse an output folder ``data prepare`` must not write (see :func:`prepare_midi_folder`)."""
    check_output_folder(out, OUTPUT_FILES, reads=[midi_root])
    midi = out / "midi"
    if os.path.lexists(midi) and not midi.is_dir():
        raise ConfigError("is not a folder, where data prepare writes its melodies", midi)
    if out.is_dir() and not (out / "prepare_report.csv").is_file():
        names = sorted(display_name(p.name) for p in out.iterdir())
        if names:
            raise ConfigError(f"holds other files than a dataset from data prepare ({', '.join(names[:3])}"
                              f"{', ...' if len(names) > 3 else ''}): choose a new or empty folder", out)


def _inputs(midi_root: Path, out: Path) -> list[tuple[str, str | None]]:
    """The entries under ``midi_root`` (:func:`find_midi_files`), less those inside ``out``: never read back."""
    where = Path(os.path.realpath(out))

    def inside(p: Path) -> bool:
        return p == where or where in p.parents

    kept = []
    for path, problem in find_midi_files(midi_root):
        entry = Path(path)
        # realpath, not Path.resolve: a looping link is an entry to report, not a RuntimeError
        if inside(Path(os.path.realpath(entry.parent)) / entry.name) or inside(Path(os.path.realpath(entry))):
            continue
        kept.append((path, problem))
    return kept or [(os.fspath(midi_root), "no MIDI files outside the output folder")]


def _key_name(pitch_class: int) -> str:
    return KEY_TONIC_NAMES[int(pitch_class) % 12]


def _write_csv(path: Path, rows: list[dict], columns) -> None:
    """Write ``rows`` as CSV, atomically (a reader never sees half a manifest)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue().encode("utf-8"))
