"""Building the shipped corpus (``data/``) from the collections inside music21: a maintainer tool.

What ``python -m labkit corpus build`` (``make corpus``) runs is :func:`build`:
ABC files are split into single tunes, each tune is parsed by music21 in a
worker process, and a ``note_seq.NoteSequence`` is built from the parsed notes
(ties merged, rests and pickups respected) and written as MIDI. A tune that
cannot be converted is skipped and reported in ``data/build_report.json``;
the build goes on. A re-run converts only tunes whose source text changed.

music21 is imported only inside the functions that parse; students read the corpus
with :mod:`labkit.corpus`, which needs none of this.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from labkit._common import atomic_write
from labkit.corpus import MANIFEST_COLUMNS, MANIFEST_FILE, SPLITS, _repo_data_dir, split_of
from labkit.errors import ConfigError, CorpusError
from labkit.melody import DEFAULT_QPM

#: Bump when the conversion changes: every tune is then converted again.
BUILDER_VERSION = "2"

#: Tempo (quarter notes per minute) of a tune whose source gives none.
#: MIDI velocity of every note (the sources have no dynamics we keep).
VELOCITY = 80
#: General MIDI program of melodies (0 = acoustic grand piano).
MELODY_PROGRAM = 0
#: General MIDI program of the four chorale voices (52 = choir aahs).
CHORALE_PROGRAM = 52
#: Names of the chorale voices, in track order (the soprano carries the melody).
CHORALE_VOICES: tuple[str, ...] = ("Soprano", "Alto", "Tenor", "Bass")
#: A tune that takes longer than this (seconds) to convert is skipped.
TUNE_TIMEOUT_S = 120

REPORT_FILE = "build_report.json"
CACHE_FILE = "build_cache.csv"
_CACHE_COLUMNS = ("id", "scope", "hash", "midi_sha1", "reason", "warnings")

_COLLECTION_RE = re.compile(r"^[a-z0-9]+$")


class TuneError(CorpusError):
    """One tune of a source cannot be parsed or converted (the build skips and reports it)."""


# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Collection:
    """One source collection of the corpus and how to turn its files into tunes.

    Attributes:
        name: lower-case letters/digits, the first part of every tune id (``"oneills"``).
        style: style label of its tunes (``"irish"``).
        root: folder the ``files`` are relative to (music21's corpus folder).
        files: source files, relative to ``root`` (ABC; MusicXML/Humdrum for chorales).
        voices: ``"melody"`` (one track; the top note of a chord) or ``"satb"``
            (the four chorale voices as four tracks, soprano first).
        ids: how tune ids are made: ``"subset"`` (``<name>-<file stem>-<index:04d>``),
            ``"number"`` (``<name>-<X: number:04d>``, duplicates skipped),
            ``"file"`` (``<name>-<file stem>``; ``-<index>`` added when a file holds several).
        styles: per-subset style labels overriding ``style`` (subset = file stem).
        renumber: corrections ``{(file, X number): true number}`` for the ``"number"`` scheme.
        infer_mode: the source's key gives the tonic only (Essen): guess major or minor
            from the melody (see :func:`music21_to_sequence`).
        description: one line for the report and the README.
    """

    name: str
    style: str
    root: Path
    files: tuple[str, ...]
    voices: str = "melody"
    ids: str = "subset"
    styles: Mapping[str, str] = field(default_factory=dict)
    renumber: Mapping[tuple[str, int], int] = field(default_factory=dict)
    description: str = ""
    infer_mode: bool = False

    def __post_init__(self):
        if not _COLLECTION_RE.match(self.name):
            raise ConfigError(f"collection name {self.name!r} must be lower-case letters and digits")
        if self.voices not in ("melody", "satb"):
            raise ConfigError(f"collection {self.name}: voices must be 'melody' or 'satb', not {self.voices!r}")
        if self.ids not in ("subset", "number", "file"):
            raise ConfigError(f"collection {self.name}: ids must be 'subset', 'number' or 'file', not {self.ids!r}")

    def config_key(self) -> str:
        """What, besides a tune's own text, decides its conversion (part of the cache key)."""
        key = [self.name, self.style, dict(sorted(self.styles.items())), self.voices, self.ids]
        return json.dumps(key + (["infer_mode"] if self.infer_mode else []))


@dataclass(frozen=True)
class TuneSource:
    """One tune to convert: where it comes from and what its manifest row will say."""

    id: str
    collection: str
    subset: str
    style: str
    title: str
    source: str          # path relative to the collection root (music21's corpus)
    index: int           # 1-based position in the source file
    catalogue: str
    voices: str          # "melody" | "satb"
    path: str            # where its source lives (file path)
    text: str = ""       # ABC text of this one tune ("" for a score file)
    hash: str = ""       # cache key
    infer_mode: bool = False


#: Essen subsets (file stems) the corpus keeps, and their styles. Left out:
#: test0/test1/testd/teste (music21's test files), variant0 (variants of
#: tunes from many countries), folkHaydn (Haydn's arrangements of Scottish songs).
ESSEN_SUBSETS: dict[str, str] = {
    **{s: "german" for s in (
        "altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50",
        "ballad60", "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk5", "erk10",
        "erk20", "erk30", "fink0", "kinder0", "zuccal0")},
    "han1": "chinese", "han2": "chinese",
    "lot": "lorraine", "lux": "luxembourg",
    "irl": "irish",   # Irish folk songs (Sean O Boyle, 1976; origin "Irland")
}


def music21_corpus_dir() -> Path:
    """The corpus folder inside the installed ``music21`` package.

    Raises:
        CorpusError: music21 is not installed (``pip install 'labkit[corpus]'``).

    Notebook: 02_preprocessing.ipynb
    """
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("music21 is not installed; building the corpus needs it: pip install 'labkit[corpus]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpus"
    if not path.is_dir():
        raise CorpusError("this music21 installation has no corpus folder", path)
    return path


def default_collections(root: str | os.PathLike | None = None) -> list[Collection]:
    """The collections of the shipped corpus, read from music21's corpus folder ``root``.

    Notebook: 02_preprocessing.ipynb

    >>> [c.name for c in default_collections()]   # doctest: +SKIP
    ['essen', 'oneills', 'ryans', 'airds', 'bach']
    """
    root = Path(root) if root is not None else music21_corpus_dir()

    def listing(folder: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
        d = root / folder
        if not d.is_dir():
            return ()
        return tuple(f"{folder}/{p.name}" for p in sorted(d.iterdir()) if p.suffix in suffixes)

    essen = tuple(f for f in (f"essenFolksong/{s}.abc" for s in ESSEN_SUBSETS) if (root / f).is_file())
    return [
        Collection("essen", "german", root, essen, ids="subset", styles=ESSEN_SUBSETS, infer_mode=True,
                   description="Essen Folksong Collection (Schaffrath 1995), ABC by Seymour Schlien"),
        Collection("oneills", "irish", root, listing("oneills1850", (".abc",)), ids="number",
                   # The last tune of 0626-0700.abc is numbered X: 800 but is No. 700
                   # (the file covers 626-700; 0759-0810.abc holds the real No. 800).
                   renumber={("oneills1850/0626-0700.abc", 800): 700},
                   description="O'Neill's Music of Ireland (Chicago, 1850 tunes, 1903)"),
        Collection("ryans", "fiddle", root, listing("ryansMammoth", (".abc",)), ids="file",
                   description="Ryan's Mammoth Collection of fiddle tunes (Boston, 1883)"),
        Collection("airds", "scottish", root, listing("airdsAirs", (".abc",)), ids="subset",
                   description="Aird's Selection of Scotch, English, Irish and Foreign Airs (Glasgow, 1778-1803)"),
        Collection("bach", "chorale", root, _bach_files(root), voices="satb", ids="file",
                   description="J. S. Bach's four-part chorales"),
    ]


def _bach_files(root: Path) -> tuple[str, ...]:
    folder = root / "bach"
    if not folder.is_dir():
        return ()
    return tuple(f"bach/{p.name}" for p in sorted(folder.iterdir())
                 if p.name.startswith("bwv") and p.suffix in (".mxl", ".xml", ".musicxml", ".krn"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def split_abc(text: str) -> tuple[str, list[str]]:
    """Split the text of an ABC file into its file header and its tunes (each from its ``X:`` line).

    Field lines of the header (``M:``, ``L:``, ... before the first ``X:``)
    apply to every tune; they are returned as the header so a caller can
    prepend them. Comment lines are dropped from the header.

    Notebook: 02_preprocessing.ipynb

    >>> header, tunes = split_abc("%comment\\nL:1/8\\nX:1\\nK:C\\nCDE|\\n\\nX:2\\nK:G\\nGAB|\\n")
    >>> header, len(tunes), tunes[1].splitlines()[0]
    ('L:1/8\\n', 2, 'X:2')
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks = re.split(r"(?m)^(?=X:)", text)
    head, tunes = chunks[0], [c.rstrip() + "\n" for c in chunks[1:]]
    header = "".join(line + "\n" for line in head.splitlines() if re.match(r"^[A-Za-z]:", line))
    return header, tunes


def _abc_field(text: str, name: str) -> str:
    match = re.search(rf"(?m)^{name}:[ \t]*(.*?)[ \t]*$", text)
    return match.group(1).strip() if match else ""


def _x_number(text: str) -> int | None:
    match = re.match(r"X:\s*(\d+)", text)
    return int(match.group(1)) if match else None


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha1()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def _music21_version() -> str:
    try:
        from importlib.metadata import version

        return version("music21")
    except Exception:  # pragma: no cover - music21 missing: the build fails later with a clear error
        return "?"


def _chorale_catalogue() -> dict[str, tuple[str, list[int]]]:
    """BWV number (as in the file name) -> (German title, Riemenschneider numbers)."""
    try:
        from music21.corpus import chorales

        table = chorales.ChoraleListRKBWV()
    except Exception:  # pragma: no cover - an old music21 without the table
        return {}
    out: dict[str, tuple[str, list[int]]] = {}
    for number, entry in sorted(table.byRiemenschneider.items()):
        title, numbers = out.setdefault(str(entry["bwv"]), (entry["title"], []))
        numbers.append(int(number))
    return out


def enumerate_tunes(collections: Sequence[Collection]) -> tuple[list[TuneSource], list[dict]]:
    """Every tune of these collections, and the tunes left out at this stage (duplicates, unreadable files).

    Fast: reads and splits files, parses nothing. Returns ``(sources, skipped)``;
    each skipped entry is a dict with ``id``, ``collection``, ``source``, ``index``, ``reason``.

    Notebook: 02_preprocessing.ipynb
    """
    sources: list[TuneSource] = []
    skipped: list[dict] = []
    m21 = _music21_version()
    for col in collections:
        key = col.config_key()
        seen_numbers: dict[str, str] = {}
        bwv_catalogue = _chorale_catalogue() if col.voices == "satb" else {}
        chosen_variants = _choose_variants(col.files, bwv_catalogue) if col.voices == "satb" else None
        for rel in col.files:
            path = Path(col.root) / rel
            stem = Path(rel).stem
            subset = _slug(stem) if col.ids == "subset" else ""
            style = col.styles.get(stem, col.style)
            if chosen_variants is not None and rel not in chosen_variants:
                keep = chosen_variants.get(_variant_base(rel))
                skipped.append(dict(id=f"{col.name}-{_slug(stem)}", collection=col.name, subset=subset, source=rel, index=1,
                                    title="", reason=f"variant: one version of this chorale is kept, {keep}"))
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                skipped.append(dict(id=f"{col.name}-{_slug(stem)}", collection=col.name, subset=subset, source=rel, index=0,
                                    title="", reason=f"source file unreadable: {exc.strerror or exc}"))
                continue
            if path.suffix.lower() != ".abc":  # one score per file (chorales)
                bwv = stem[3:] if stem.startswith("bwv") else stem
                title, rnums = bwv_catalogue.get(bwv, ("", []))
                catalogue = f"BWV {bwv}" + (f"; Riemenschneider {', '.join(map(str, rnums))}" if rnums else "")
                tid = f"{col.name}-{_slug(stem)}"
                sources.append(TuneSource(tid, col.name, subset, style, title or f"BWV {bwv}", rel, 1, catalogue,
                                          col.voices, str(path), "",
                                          _hash(BUILDER_VERSION, m21, key, tid, rel, data), col.infer_mode))
                continue
            header, tunes = split_abc(data.decode("utf-8", errors="replace"))
            for i, tune in enumerate(tunes, start=1):
                text = header + tune if header else tune
                title = _abc_field(tune, "T")
                number = _x_number(tune)
                catalogue = ""
                if col.ids == "subset":
                    tid = f"{col.name}-{subset}-{i:04d}"
                    code = _abc_field(tune, "N")
                    catalogue = code if re.fullmatch(r"[A-Z]+\d+[A-Za-z]?", code) else (
                        f"{stem} No. {number}" if number is not None else "")
                elif col.ids == "number":
                    number = col.renumber.get((rel, number), number)
                    if number is None:
                        skipped.append(dict(id=f"{col.name}-{_slug(stem)}-{i}", collection=col.name, subset=subset, source=rel,
                                            index=i, title=title, reason="tune has no X: number"))
                        continue
                    tid = f"{col.name}-{number:04d}"
                    catalogue = f"No. {number}"
                    if tid in seen_numbers:
                        skipped.append(dict(id=tid, collection=col.name, subset=subset, source=rel, index=i, title=title,
                                            reason=f"duplicate: another transcription of No. {number} "
                                                   f"is kept, from {seen_numbers[tid]}"))
                        continue
                    seen_numbers[tid] = rel
                else:
                    tid = f"{col.name}-{_slug(stem)}" + (f"-{i}" if len(tunes) > 1 else "")
                sources.append(TuneSource(tid, col.name, subset, style, title, rel, i, catalogue, col.voices,
                                          str(path), text, _hash(BUILDER_VERSION, m21, key, tid, rel, str(i), text),
                                          col.infer_mode))
    ids = [s.id for s in sources]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CorpusError(f"two tunes get the same id {dup!r}; rename a source file or collection")
    return sources, skipped


def _variant_base(rel: str) -> str:
    return Path(rel).stem.split("-", 1)[0]


def _choose_variants(files: Sequence[str], catalogue: Mapping[str, tuple]) -> dict[str, str]:
    """For chorale files: keep one file per chorale (``bwv248.9-1`` and ``bwv248.9-s`` are one chorale).

    Preference: the version named in the Riemenschneider table, then the file
    without a suffix, then MusicXML over Humdrum, then the first by name.
    Returns ``{kept file: kept file, base: kept file}``.
    """
    groups: dict[str, list[str]] = {}
    for rel in files:
        groups.setdefault(_variant_base(rel), []).append(rel)
    chosen: dict[str, str] = {}
    for base, members in groups.items():
        def rank(rel: str):
            stem = Path(rel).stem
            return (stem[3:] not in catalogue, "-" in stem, Path(rel).suffix == ".krn", rel)

        keep = min(members, key=rank)
        chosen[keep] = keep
        chosen[base] = keep
    return chosen


# --------------------------------------------------------------------------
# music21 score -> NoteSequence
# --------------------------------------------------------------------------

_MODE_NAMES = ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian", "aeolian", "locrian")


@contextlib.contextmanager
def _music21_session():
    """Within: music21's warnings are silenced and its ABC re-barring is off.

    music21's ABC reader "re-bars" measures that overflow the time signature
    and gives the pieces invented time signatures (1/16, 1/8 ...); we keep the
    bars as written. Both changes are undone on leaving.
    """
    from music21.abcFormat import translate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = translate.reBar
        translate.reBar = _no_rebar
        try:
            yield
        finally:
            translate.reBar = saved


def _no_rebar(part, *args, **kwargs):
    return part


def _key_name(k) -> str:
    """``"G major"``, ``"Bb minor"``, ``"A dorian"``."""
    tonic = k.tonic.name.replace("-", "b")
    mode = (k.mode or "major").lower()
    return f"{tonic} {mode}"


def _as_key(ks):
    from music21 import key as m21key

    if isinstance(ks, m21key.Key):
        return ks
    return ks.asKey("major")


def _part_notes(part, top_only: bool, pad: float) -> tuple[list[list[float]], list[str]]:
    """[[start_q, end_q, pitch], ...] of a part, ties merged, grace notes and chord symbols dropped."""
    from music21 import chord, harmony

    events = []
    for el in part.flatten().notes:
        if isinstance(el, harmony.Harmony):
            continue
        ql = float(el.duration.quarterLength)
        if el.duration.isGrace or ql <= 0:
            continue
        onset = float(el.offset) + pad
        if isinstance(el, chord.Chord):
            members = [(n.pitch.midi, n.tie or el.tie) for n in el.notes]
            if top_only and members:
                members = [max(members, key=lambda m: m[0])]
        else:
            members = [(el.pitch.midi, el.tie)]
        for pitch, tie in members:
            events.append((onset, ql, int(round(pitch)), tie.type if tie is not None else None))
    events.sort(key=lambda e: (e[0], -e[2]))
    notes: list[list[float]] = []
    open_ties: dict[int, int] = {}
    for onset, ql, pitch, tie in events:
        idx = open_ties.get(pitch)
        if tie in ("stop", "continue") and idx is not None and abs(notes[idx][1] - onset) < 1e-6:
            notes[idx][1] = onset + ql
        else:
            notes.append([onset, onset + ql, pitch])
            idx = len(notes) - 1
        if tie in ("start", "continue"):
            open_ties[pitch] = idx
        else:
            open_ties.pop(pitch, None)
    warn: list[str] = []
    if top_only:
        mono: list[list[float]] = []
        overlaps = 0
        for note in sorted(notes, key=lambda n: (n[0], -n[2])):
            if mono and abs(mono[-1][0] - note[0]) < 1e-6:
                continue  # same onset: the highest pitch (sorted first) is the melody
            if mono and mono[-1][1] > note[0] + 1e-6:
                mono[-1][1] = note[0]
                overlaps += 1
            mono.append(note)
        if overlaps:
            warn.append(f"{overlaps} overlapping note(s) shortened to keep one line")
        notes = mono
    return notes, warn


def _pickup_padding(part) -> float:
    """Quarters of silence before a pickup measure, so that bar lines fall on whole bars from time 0."""
    from music21 import stream

    measures = part.getElementsByClass(stream.Measure)
    if len(measures) < 2:
        return 0.0
    first = measures[0]
    padding = float(first.paddingLeft or 0.0)
    if padding > 0:
        return padding
    ts = first.timeSignature or part.flatten().getElementsByClass("TimeSignature").first()
    if ts is None:
        return 0.0
    bar = float(ts.barDuration.quarterLength)
    length = float(first.highestTime)
    return bar - length if 0 < length < bar - 1e-6 else 0.0


#: Repeats written out may make a tune at most this many times longer; more
#: means the repeat marks were misread, and the tune is kept as written.
MAX_REPEAT_GROWTH = 3.0


def _is_repeat(barline, direction: str) -> bool:
    from music21 import bar

    return isinstance(barline, bar.Repeat) and barline.direction == direction


def _add_implicit_repeat_starts(part) -> int:
    """Give every end-repeat its start-repeat, where the source leaves it implicit.

    In ABC (and in print) ``:|`` without a ``|:`` repeats from the previous
    ``:|`` or double bar, or from the start. music21's expander instead
    goes back further, so a tune of many ``:|`` sections grows many times
    over (O'Neill's No. 708: 320 notes became 11,352). Returns how many
    start-repeats were added.
    """
    from music21 import bar, spanner

    measures = list(part.getElementsByClass("Measure"))
    in_bracket = set()
    for sp in part.flatten().getElementsByClass(spanner.RepeatBracket):
        if str(sp.number or "1").strip() not in ("1", ""):
            in_bracket.update(id(m) for m in sp.getSpannedElements())
    added = 0
    section_start: int | None = 0
    open_repeat = False
    for i, m in enumerate(measures):
        if section_start is None and id(m) not in in_bracket:
            section_start = i  # the first measure after a second ending
        if _is_repeat(m.leftBarline, "start"):
            open_repeat = True
        right = m.rightBarline
        if _is_repeat(right, "end"):
            if not open_repeat and section_start is not None and section_start <= i:
                measures[section_start].leftBarline = bar.Repeat(direction="start")
                added += 1
            open_repeat = False
            section_start = None
        elif right is not None and getattr(right, "type", "") in ("double", "final", "light-light", "light-heavy"):
            if not open_repeat:
                section_start = None
    return added


def _expand(parts):
    """Parts with repeats written out; the written parts (and a warning) when that fails or is implausible."""
    from music21 import spanner

    has_repeats = any(
        p.flatten().getElementsByClass(spanner.RepeatBracket)
        or any(_is_repeat(m.leftBarline, "start") or _is_repeat(m.rightBarline, "end")
               for m in p.getElementsByClass("Measure"))
        for p in parts
    )
    if not has_repeats:
        return parts, []
    try:
        for p in parts:
            _add_implicit_repeat_starts(p)
        expanded = [p.expandRepeats() for p in parts]
    except Exception as exc:  # music21's Expander raises on inconsistent repeat marks
        return parts, [f"repeats kept as written (cannot expand: {type(exc).__name__})"]
    before = sum(p.highestTime for p in parts)
    after = sum(p.highestTime for p in expanded)
    if before > 0 and after > MAX_REPEAT_GROWTH * before:
        return parts, [f"repeats kept as written (expanding made the tune {after / before:.0f} times longer)"]
    return expanded, []


def music21_to_sequence(score, voices: str = "melody", source: str = "", infer_mode: bool = False):
    """Build a ``note_seq.NoteSequence`` from a parsed music21 score.

    * ``voices="melody"``: the first part, one instrument (0); of a chord only
      the top note is kept, so the line is monophonic.
    * ``voices="satb"``: the parts named Soprano, Alto, Tenor, Bass (or the
      only four parts), as instruments 0..3 in that order (program
      :data:`CHORALE_PROGRAM`).

    Tied notes are merged into one note; grace notes and chord symbols are
    dropped; rests keep their time. Repeats are written out when music21 can
    expand them. A pickup bar is preceded by silence so that bar lines fall
    on whole bars counted from time 0. Tempo: the score's first metronome
    mark (ABC ``Q:``), else :data:`DEFAULT_QPM`. Time and key signatures
    become annotations (a modal key such as A dorian is stored as the major
    key with the same signature, G major, because MIDI knows only major and
    minor; the manifest keeps the mode). With ``infer_mode`` (for sources
    whose key gives only the tonic, as the Essen ABC files do: ``K: D`` for a
    tune in D minor), a major key becomes minor when the minor third above the
    tonic sounds longer in the melody than the major third.

    Returns:
        ``(sequence, info)``; ``info`` has ``meter`` (``"6/8"`` or ``""``),
        ``key`` (``"G major"`` or ``""``), ``qpm``, ``notes`` (melody notes),
        ``duration_quarters`` and ``warnings`` (a list of strings).

    Raises:
        TuneError: no part, no notes, or the four chorale voices are not found.

    Notebook: 02_preprocessing.ipynb
    """
    import note_seq
    from music21 import meter, stream, tempo

    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    if not parts:
        raise TuneError("the score has no part", source or None)
    if voices == "satb":
        parts = _satb_parts(parts, source)
    else:
        parts = parts[:1]
    warn: list[str] = []
    pad = _pickup_padding(parts[0])
    parts, w = _expand(parts)
    warn += w

    qpm = DEFAULT_QPM
    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        if mark.number is not None and not getattr(mark, "numberImplicit", False):
            value = mark.getQuarterBPM()
            if value and 20 <= value <= 400:
                qpm = float(value)
            else:
                warn.append(f"tempo {value} ignored")
            break
    spq = 60.0 / qpm

    seq = note_seq.NoteSequence()
    seq.ticks_per_quarter = note_seq.constants.STANDARD_PPQ
    seq.tempos.add(time=0.0, qpm=qpm)
    melody_notes = 0
    end_q = 0.0
    pc_weight = [0.0] * 12  # quarters each pitch class sounds in the melody
    for instrument, part in enumerate(parts):
        notes, w = _part_notes(part, top_only=(voices == "melody"), pad=pad)
        warn += w
        if voices == "satb":
            info = seq.instrument_infos.add()
            info.instrument = instrument
            info.name = CHORALE_VOICES[instrument]
        for start, end, pitch in notes:
            if not 0 <= pitch <= 127:
                raise TuneError(f"pitch {pitch} is outside MIDI's 0..127", source or None)
            seq.notes.add(pitch=pitch, velocity=VELOCITY, start_time=start * spq, end_time=end * spq,
                          instrument=instrument,
                          program=CHORALE_PROGRAM if voices == "satb" else MELODY_PROGRAM)
            end_q = max(end_q, end)
        if instrument == 0:
            melody_notes = len(notes)
            for start, end, pitch in notes:
                pc_weight[pitch % 12] += end - start
    if melody_notes == 0:
        raise TuneError("no notes", source or None)
    seq.total_time = end_q * spq

    flat = parts[0].flatten()
    meter_name = ""
    last = None
    for ts in flat.getElementsByClass(meter.TimeSignature):
        num, den = int(ts.numerator), int(ts.denominator)
        if den <= 0 or den & (den - 1):  # MIDI stores the denominator as a power of two
            warn.append(f"time signature {ts.ratioString} left out")
            continue
        if (num, den) == last:
            continue
        t = 0.0 if last is None else (float(ts.offset) + pad) * spq
        if last is None:
            meter_name = f"{num}/{den}"
        seq.time_signatures.add(time=t, numerator=num, denominator=den)
        last = (num, den)

    key_name = ""
    last_key = None
    for ks in flat.getElementsByClass("KeySignature"):
        k = _as_key(ks)
        mode = (k.mode or "major").lower()
        if infer_mode and mode == "major":
            tonic_pc = k.tonic.pitchClass
            if pc_weight[(tonic_pc + 3) % 12] > pc_weight[(tonic_pc + 4) % 12]:
                from music21 import key as m21key

                k, mode = m21key.Key(k.tonic.name, "minor"), "minor"
        if mode in ("major", "minor"):
            stored_tonic, stored_mode = k.tonic, mode
        else:  # a church mode: the major key with the same signature
            stored_tonic, stored_mode = ks.asKey("major").tonic, "major"
        signature = (stored_tonic.pitchClass, stored_mode)
        if signature == last_key:
            continue
        t = 0.0 if last_key is None else (float(ks.offset) + pad) * spq
        if last_key is None:
            key_name = _key_name(k)
        seq.key_signatures.add(
            time=t, key=stored_tonic.pitchClass,
            mode=note_seq.NoteSequence.KeySignature.MINOR if stored_mode == "minor"
            else note_seq.NoteSequence.KeySignature.MAJOR)
        last_key = signature

    info = dict(meter=meter_name, key=key_name, qpm=qpm, notes=melody_notes,
                duration_quarters=end_q, warnings=warn)
    return seq, info


def _satb_parts(parts, source: str):
    def name(p) -> str:
        raw = p.partName or ""
        return re.split(r"[\r\n]", raw)[0].strip().lower()

    chosen = []
    for voice in CHORALE_VOICES:
        match = next((p for p in parts if name(p).startswith(voice.lower())), None)
        chosen.append(match)
    if all(p is not None for p in chosen):
        return chosen
    if len(parts) == 4 and not any(name(p) for p in parts):
        return parts  # unnamed parts (Humdrum): score order is S, A, T, B
    raise TuneError(
        f"not a four-part chorale: parts {[p.partName for p in parts]} lack a soprano, alto, tenor or bass",
        source or None)


def abc_to_sequence(text: str, source: str = "", infer_mode: bool = False):
    """Parse the ABC text of one tune with music21 and build its ``NoteSequence`` (a melody).

    Returns ``(sequence, info)`` as :func:`music21_to_sequence` (``infer_mode`` likewise).

    Raises:
        TuneError: music21 cannot parse the text, or it holds no notes.

    Notebook: 02_preprocessing.ipynb

    >>> seq, info = abc_to_sequence("X:1\\nM:2/4\\nL:1/8\\nK:G\\nB | c2 d2- | d2 e2 |]\\n")
    >>> [n.pitch for n in seq.notes], info["meter"], info["key"]
    ([71, 72, 74, 76], '2/4', 'G major')
    >>> round(seq.notes[0].start_time, 3)   # the pickup starts 3/2 quarters in, at 120 qpm
    0.75
    """
    from music21 import converter, stream

    with _music21_session():
        try:
            score = converter.parseData(text, format="abc")
        except Exception as exc:  # music21 raises many kinds on bad ABC
            raise TuneError(f"music21 cannot parse the ABC ({type(exc).__name__}: {_short(exc)})",
                            source or None) from None
        if isinstance(score, stream.Opus):
            raise TuneError("the text holds several tunes; pass one (see split_abc)", source or None)
        return music21_to_sequence(score, "melody", source, infer_mode)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------

class _Timeout(BaseException):
    """Raised by SIGALRM in a worker; a BaseException, so no ``except Exception`` swallows it."""


_IN_WORKER = False  # set in the build's worker processes


def _alarm(signum, frame):  # pragma: no cover - only on a hanging tune
    raise _Timeout()


def _convert_one(task: tuple[TuneSource, str]) -> dict:
    """Worker: convert one tune, write its MIDI; never raises (a failure is a 'skipped' result)."""
    src, out_dir = task
    # The per-tune time limit uses SIGALRM, only in the pool's worker processes
    # (in the caller's process it could clobber the caller's own alarm).
    use_alarm = _IN_WORKER and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    old = None
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TUNE_TIMEOUT_S)
    try:
        return _convert_unguarded(src, out_dir)
    except _Timeout:
        return dict(id=src.id, hash=src.hash, status="skipped", reason=f"timed out after {TUNE_TIMEOUT_S} s")
    except TuneError as exc:
        return dict(id=src.id, hash=src.hash, status="skipped", reason=exc.problem)
    except Exception as exc:  # any other failure inside music21/note_seq: skip and report this tune only
        return dict(id=src.id, hash=src.hash, status="skipped",
                    reason=f"conversion failed ({type(exc).__name__}: {_short(exc)})")
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _convert_unguarded(src: TuneSource, out_dir: str) -> dict:
    if src.text:
        seq, info = abc_to_sequence(src.text, infer_mode=src.infer_mode)
    else:
        from music21 import converter

        with _music21_session():
            try:
                score = converter.parse(src.path, forceSource=True)
            except Exception as exc:
                raise TuneError(f"music21 cannot parse the file ({type(exc).__name__}: {_short(exc)})") from None
            seq, info = music21_to_sequence(score, src.voices, infer_mode=src.infer_mode)
    seq.id = src.id
    seq.filename = src.source
    seq.collection_name = src.collection
    seq.sequence_metadata.title = src.title
    rel = f"midi/{src.collection}/{src.id}.mid"
    path = Path(out_dir) / rel
    from labkit.midi_io import write_midi

    try:
        write_midi(seq, path)
    except Exception as exc:  # pretty_midi/mido reject values MIDI cannot hold
        raise TuneError(f"cannot write MIDI ({type(exc).__name__}: {_short(exc)})") from None
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    quarters = info["duration_quarters"]
    row = dict(
        id=src.id, collection=src.collection, subset=src.subset, style=src.style, title=src.title,
        source=src.source, index=src.index, catalogue=src.catalogue, meter=info["meter"], key=info["key"],
        notes=info["notes"], duration_quarters=_fmt(quarters, 4),
        duration_seconds=_fmt(quarters * 60.0 / info["qpm"], 3), path=rel, split=split_of(src.id),
    )
    return dict(id=src.id, hash=src.hash, status="ok", row=row, sha1=sha1, warnings=info["warnings"])


def _fmt(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass
class BuildReport:
    """What a build did. ``counts[collection]`` = ``{"tunes": n, "skipped": m, "styles": {style: n}}``.

    ``skipped`` and ``warnings`` are lists of dicts (``id``, ``collection``,
    ``source``, ``index``, ``title``, ``reason``); ``converted`` tunes were
    parsed in this run, ``reused`` came from the cache, ``removed`` stale files
    were deleted; ``seconds`` is the wall time.
    """

    out_dir: Path
    counts: dict[str, dict]
    skipped: list[dict]
    warnings: list[dict]
    converted: int
    reused: int
    removed: int
    seconds: float
    jobs: int
    written: list[str]

    @property
    def tunes(self) -> int:
        """Tunes in the manifest."""
        return sum(c["tunes"] for c in self.counts.values())

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"corpus: {self.tunes} tunes in {self.out_dir} "
                 f"({self.converted} converted, {self.reused} unchanged, {len(self.skipped)} skipped, "
                 f"{self.removed} stale files removed) in {self.seconds:.1f} s with {self.jobs} job(s)"]
        for name, c in self.counts.items():
            styles = ", ".join(f"{s} {n}" for s, n in c["styles"].items())
            lines.append(f"  {name:10s} {c['tunes']:6d} tunes, {c['skipped']:4d} skipped  ({styles})")
        reasons: dict[str, int] = {}
        for s in self.skipped:
            reason = re.split(r"[:;(]", s["reason"])[0].strip()
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  skipped {n:5d}: {reason}")
        if self.warnings:
            lines.append(f"  {len(self.warnings)} tune(s) kept with a warning (e.g. repeats kept as written); "
                         f"see {REPORT_FILE}")
        return "\n".join(lines)


def _read_csv_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _csv_text(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it (so a re-run rewrites nothing)."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def _file_sha1(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _scope(collections: Sequence[Collection], only) -> tuple[list[Collection], set[str] | None]:
    """Collections to build, and the subsets to rebuild (``None``: whole collections)."""
    if only is None:
        return list(collections), None
    only = [only] if isinstance(only, str) else list(only)
    known = {c.name: c for c in collections}
    names: list[str] = []
    parts: dict[str, set[str] | None] = {}
    for item in only:
        name, _, subset = str(item).partition("/")
        if name not in known:
            raise ConfigError(f"--only: unknown collection {name!r} (known: {', '.join(known)})")
        if name not in names:
            names.append(name)
        if not subset:
            parts[name] = None
        elif parts.get(name, set()) is not None:
            parts.setdefault(name, set()).add(_slug(subset))
    scope = {f"{n}/*" if parts[n] is None else f"{n}/{s}" for n in names for s in (parts[n] or {"*"})}
    return [c for c in collections if c.name in names], scope


def _in_scope(collection: str, subset: str, scope: set[str] | None, names: set[str]) -> bool:
    """True when tunes of this collection/subset are (re)built in this run."""
    if collection not in names:
        return False
    return scope is None or f"{collection}/*" in scope or f"{collection}/{subset}" in scope


def default_out_dir() -> Path:
    """The repository's ``data/`` folder, where ``python -m labkit corpus build`` writes by default.

    Raises:
        CorpusError: labkit is installed without its repository (pass an output folder).

    Notebook: 02_preprocessing.ipynb
    """
    repo = _repo_data_dir()
    if repo.is_dir() and (repo.parent / "pyproject.toml").is_file():
        return repo
    raise CorpusError("labkit is not inside its repository: give an output folder (--out DIR)", repo)


def _read_report(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _worker_init() -> None:
    # Workers ignore Ctrl-C: the parent process handles it and closes the pool.
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # music21's warnings would flood the terminal
    import music21  # noqa: F401 - once per worker, not in the first tune's time


def _run(tasks: list, jobs: int, progress: bool):
    """Yield the result of each task, converted in ``jobs`` processes (or here when 1)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="converting tunes", unit="tune", disable=not progress, file=sys.stderr)
    try:
        if jobs == 1 or len(tasks) == 1:
            for task in tasks:
                yield _convert_one(task)
                bar.update(1)
            return
        # spawn, not fork: a forked copy of a process that runs JAX's threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(jobs, len(tasks)), initializer=_worker_init) as pool:
            for res in pool.imap_unordered(_convert_one, tasks, chunksize=4):
                yield res
                bar.update(1)
    finally:
        bar.close()


def build(out_dir: str | os.PathLike | None = None, jobs: int | None = None, only=None, progress: bool = True,
          collections: Sequence[Collection] | None = None) -> BuildReport:
    """Convert the source collections into ``midi/<collection>/<id>.mid`` plus ``manifest.csv``.

    Each ABC file is split into tunes; each tune is parsed and converted on
    its own in a pool of ``jobs`` worker processes, so one bad tune cannot
    harm another: it is skipped and listed, with the reason, in
    ``build_report.json``. A tune whose source text, collection settings,
    music21 version and :data:`BUILDER_VERSION` are unchanged, and whose MIDI
    file is still the one written, is not converted again (the cache is
    ``build_cache.csv``): a re-run with nothing changed takes seconds and
    rewrites no file. The output is deterministic: a rebuild gives
    byte-identical MIDI files, manifest, report and cache.

    Args:
        out_dir: output folder; default the repository's ``data/``.
        jobs: worker processes; default all cores. 1 converts in this process.
        only: collection names (``"bach"``) or subsets (``"essen/kinder0"``) to
            (re)build; the manifest keeps the rows of the other collections
            already in ``out_dir``.
        progress: show a progress bar (tqdm) on stderr.
        collections: the sources; default :func:`default_collections` (music21's corpus).

    Returns:
        A :class:`BuildReport`.

    Raises:
        CorpusError: music21 or its corpus is missing, or the output folder cannot be written.
        ConfigError: ``only`` names an unknown collection, or ``jobs < 1``.

    Notebook: 02_preprocessing.ipynb

    >>> report = build("/tmp/corpus", only="essen/kinder0", progress=False)   # doctest: +SKIP
    >>> report.counts["essen"]["tunes"], report.counts["essen"]["notes"]      # doctest: +SKIP
    (213, 8393)
    """
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    all_collections = list(collections) if collections is not None else default_collections()
    wanted, scope = _scope(all_collections, only)
    names = {c.name for c in wanted}

    def in_scope(collection: str, subset: str) -> bool:
        return _in_scope(collection, subset, scope, names)

    try:
        (out / "midi").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(f"cannot create the output folder ({exc.strerror or exc})", out) from None

    sources, pre_skipped = enumerate_tunes(wanted)
    sources = [s for s in sources if in_scope(s.collection, s.subset)]
    pre_skipped = [s for s in pre_skipped if in_scope(s["collection"], s.get("subset", ""))]

    old_manifest = {r["id"]: r for r in _read_csv_rows(out / MANIFEST_FILE) if r.get("id")}
    old_cache = {r["id"]: r for r in _read_csv_rows(out / CACHE_FILE) if r.get("id")}
    old_report = _read_report(out / REPORT_FILE)

    # 1. Reuse what the cache vouches for; convert the rest.
    results: dict[str, dict] = {}
    todo: list[TuneSource] = []
    for src in sources:
        cached = old_cache.get(src.id)
        if cached and cached.get("hash") == src.hash:
            warns = [w for w in (cached.get("warnings") or "").split(" | ") if w]
            if cached.get("reason"):
                results[src.id] = dict(status="skipped", reason=cached["reason"], reused=True)
                continue
            row = old_manifest.get(src.id)
            if row and cached.get("midi_sha1") and _file_sha1(out / row.get("path", "")) == cached["midi_sha1"]:
                results[src.id] = dict(status="ok", row=row, sha1=cached["midi_sha1"], warnings=warns, reused=True)
                continue
        todo.append(src)
    if todo:
        # Longest tunes first, so that no worker is left with a long one at the end.
        tasks = [(s, str(out)) for s in sorted(todo, key=lambda s: (-len(s.text) if s.text else -10**6, s.id))]
        for res in _run(tasks, jobs, progress):
            results[res["id"]] = res

    # 2. The manifest: rows rebuilt now, plus the previous rows of what was not rebuilt.
    order = {c.name: i for i, c in enumerate(all_collections)}
    kept_rows = [r for r in old_manifest.values()
                 if not in_scope(r.get("collection", ""), r.get("subset", ""))
                 and r.get("collection") in order and (out / r.get("path", "")).is_file()]
    kept_ids = {r["id"] for r in kept_rows}
    new_rows = [results[s.id]["row"] for s in sources if results[s.id]["status"] == "ok"]
    rows = sorted(kept_rows + new_rows, key=lambda r: (order[r["collection"]], r["id"]))

    # 3. Cache and report entries, likewise.
    cache_rows = [c for c in old_cache.values() if c["id"] in kept_ids
                  or (c.get("reason") and not in_scope(*_scope_of(c)) and _scope_of(c)[0] in order)]
    for src in sources:
        res = results[src.id]
        cache_rows.append(dict(id=src.id, scope=f"{src.collection}/{src.subset}", hash=src.hash,
                               midi_sha1=res.get("sha1", ""), reason=res.get("reason", ""),
                               warnings=" | ".join(res.get("warnings", []))))
    cache_rows.sort(key=lambda c: c["id"])

    def entry(src: TuneSource, reason: str) -> dict:
        return dict(id=src.id, collection=src.collection, subset=src.subset, source=src.source,
                    index=src.index, title=src.title, reason=reason)

    skipped = [entry(s, results[s.id]["reason"]) for s in sources if results[s.id]["status"] == "skipped"]
    skipped += pre_skipped
    skipped += [e for e in old_report.get("skipped", []) if isinstance(e, dict) and e.get("collection") in order
                and not in_scope(e.get("collection", ""), e.get("subset", ""))]
    warned = [entry(s, "; ".join(results[s.id]["warnings"])) for s in sources
              if results[s.id]["status"] == "ok" and results[s.id].get("warnings")]
    warned += [e for e in old_report.get("warnings", []) if isinstance(e, dict) and e.get("id") in kept_ids]
    skipped.sort(key=lambda e: (order.get(e["collection"], len(order)), e["id"], e.get("source", ""), e.get("index", 0)))
    warned.sort(key=lambda e: (order.get(e["collection"], len(order)), e["id"]))

    # 4. Delete MIDI files of the rebuilt collections that the manifest no longer lists.
    keep_paths = {r["path"] for r in rows}
    removed = 0
    for col in wanted:
        folder = out / "midi" / col.name
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.name.endswith(".tmp") or (f.suffix == ".mid" and f"midi/{col.name}/{f.name}" not in keep_paths):
                    f.unlink()
                    removed += 1

    counts: dict[str, dict] = {}
    for col in all_collections:
        col_rows = [r for r in rows if r["collection"] == col.name]
        n_skipped = sum(1 for e in skipped if e["collection"] == col.name)
        if not col_rows and not n_skipped:
            continue
        styles: dict[str, int] = {}
        for r in col_rows:
            styles[r["style"]] = styles.get(r["style"], 0) + 1
        counts[col.name] = dict(tunes=len(col_rows), skipped=n_skipped, styles=dict(sorted(styles.items())),
                                notes=sum(int(r["notes"]) for r in col_rows))
    report_doc = dict(
        builder_version=BUILDER_VERSION, music21_version=_music21_version(), tunes=len(rows),
        collections=counts, splits={s: sum(1 for r in rows if r["split"] == s) for s in SPLITS},
        skipped=skipped, warnings=warned,
    )

    written: list[str] = [results[s.id]["row"]["path"] for s in todo if results[s.id]["status"] == "ok"]
    for name, text in (
        (MANIFEST_FILE, _csv_text(rows, MANIFEST_COLUMNS)),
        (CACHE_FILE, _csv_text(cache_rows, _CACHE_COLUMNS)),
        (REPORT_FILE, json.dumps(report_doc, indent=1, ensure_ascii=False) + "\n"),
    ):
        try:
            if _write_if_changed(out / name, text):
                written.append(name)
        except OSError as exc:
            raise CorpusError(f"cannot write ({exc.strerror or exc})", out / name) from None
    return BuildReport(out_dir=out, counts=counts, skipped=skipped, warnings=warned, converted=len(todo),
                       reused=len(sources) - len(todo), removed=removed, seconds=time.perf_counter() - t0,
                       jobs=jobs, written=written)


def _scope_of(cache_row: Mapping) -> tuple[str, str]:
    collection, _, subset = (cache_row.get("scope") or "").partition("/")
    return collection, subset
