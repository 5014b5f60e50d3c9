"""Staff notation of a melody: MusicXML written by music21, engraved as SVG by Verovio, offline.

A musician reads a tune from a score, not from a piano roll. This module writes a :class:`Melody`
(or the melody of a ``NoteSequence`` or MIDI file) as MusicXML with music21 (its time signature,
key signature and a clef that suits its range; notes that cross a bar line are split and tied,
black keys spelled as the key asks) and engraves it with Verovio's Python toolkit, which bundles
its music fonts: no network, no MuseScore, no LilyPond.

* :func:`melody_musicxml` -> the MusicXML text (what any notation program opens),
* :func:`melody_score` -> an SVG string (the first page, or the first ``bars`` bars),
* :func:`show_score` -> a :class:`Score` that a notebook shows as the picture (``_repr_svg_``),
* :func:`parts_score` -> a :class:`Score` of several voices, one staff each (a four-part harmonization:
  soprano, alto, tenor, bass), sharing a meter and a key.

The same melody gives the same MusicXML and the same SVG, byte for byte (no dates, no random ids).

References: M. S. Cuthbert and C. Ariza, "music21: A toolkit for computer-aided musicology and
symbolic music data", ISMIR 2010; L. Pugin, R. Zitellini and P. Roland, "Verovio: A library for
engraving MEI music notation into SVG", ISMIR 2014; MusicXML 4.0 (W3C Music Notation Community Group).

Notebook: 00_welcome_and_setup.ipynb, 08_polyphony.ipynb, 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction

from labkit.errors import ConfigError, LabkitError, NoNotesError
from labkit.melody import Melody

#: Page width of the engraving in Verovio's units at ``scale`` 100 (2100 is an A4 page); the SVG is
#: ``SCORE_PAGE_WIDTH * SCORE_SCALE / 100`` pixels wide: 880, a notebook's width.
SCORE_PAGE_WIDTH = 2200
#: Verovio's zoom in percent: 40 gives staves about 30 pixels high, as a printed part at arm's length.
SCORE_SCALE = 40
#: The tallest first page, in Verovio's units (before ``SCORE_SCALE``): about a dozen systems, 1200 pixels.
SCORE_PAGE_HEIGHT = 3000

# Tonic spellings of the keys by pitch class: key signatures of at most 6 accidentals (Db major, not C#).
_MAJOR_TONICS = ("C", "D-", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
_MINOR_TONICS = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")
_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "D-", "D", "E-", "E", "F", "G-", "G", "A-", "A", "B-", "B")
_NEUTRAL = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")


class ScoreError(LabkitError):
    """A melody could not be written as MusicXML or engraved (durations no score can hold)."""


@dataclass(frozen=True)
class Score:
    """An engraved melody: ``svg`` (page 1), ``musicxml``, ``pages`` (how many pages the whole has).

    A notebook shows it as the picture (``_repr_svg_``); ``str(score)`` is the SVG.

    Notebook: 00_welcome_and_setup.ipynb
    """

    svg: str
    musicxml: str
    pages: int

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg


# --- input --------------------------------------------------------------------------------------

def _as_melody(melody_or_sequence) -> Melody:
    """A Melody as it is; a NoteSequence's or MIDI file's tune (first pitched instrument, skyline)."""
    from labkit.melody import tune_melody

    if isinstance(melody_or_sequence, Melody):
        melody = melody_or_sequence
    elif isinstance(melody_or_sequence, (str, os.PathLike)):
        from labkit.midi_io import read_midi

        melody = tune_melody(read_midi(melody_or_sequence))
    elif hasattr(melody_or_sequence, "notes") and hasattr(melody_or_sequence, "total_time"):
        melody = tune_melody(melody_or_sequence)
    else:
        raise ConfigError("a score needs a labkit.melody.Melody, a note_seq.NoteSequence or a MIDI file, "
                          f"not {type(melody_or_sequence).__name__}")
    if not (melody.events >= 0).any():
        raise NoNotesError("the melody has no notes: nothing to write on a staff", melody.source or None)
    return melody


def _meter(meter, melody: Melody) -> tuple[int, int]:
    if meter is None:
        meter = (melody.numerator, melody.denominator)
    if isinstance(meter, str):
        match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", meter)
        meter = (int(match.group(1)), int(match.group(2))) if match else None
    ok = (isinstance(meter, (tuple, list)) and len(meter) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in meter)
          and 1 <= meter[0] <= 32 and meter[1] in (1, 2, 4, 8, 16))
    if not ok:
        raise ConfigError(f"meter {meter!r} is not a time signature: give 'N/D' or (N, D), "
                          "N 1..32 and D one of 1, 2, 4, 8, 16", melody.source or None)
    return int(meter[0]), int(meter[1])


def _key(key, melody: Melody):
    """A music21 Key from ``None`` (the melody's), ``"D major"``/``"F#m"``/``"Bb minor"`` or ``(tonic, mode)``."""
    from music21 import key as m21key

    if key is None:
        key = (melody.key, melody.mode)
    if isinstance(key, str):
        match = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*(major|minor|maj|min|m)?\s*", key)
        if not match:
            raise ConfigError(f"key {key!r} is not a key name: give a tonic and a mode, like 'D major', "
                              "'F#m' or 'Bb minor'", melody.source or None)
        mode = "minor" if match.group(3) in ("m", "min", "minor") else "major"
        return m21key.Key(match.group(1).upper() + match.group(2).replace("b", "-"), mode)
    ok = (isinstance(key, (tuple, list)) and len(key) == 2 and isinstance(key[0], int)
          and not isinstance(key[0], bool) and key[1] in ("major", "minor"))
    if not ok:
        raise ConfigError(f"key {key!r} is not a key: give (tonic pitch class 0..11, 'major' or 'minor') "
                          "or a name like 'D major'", melody.source or None)
    tonics = _MINOR_TONICS if key[1] == "minor" else _MAJOR_TONICS
    return m21key.Key(tonics[int(key[0]) % 12], key[1])


def _spelling(k) -> dict[int, str]:
    """Pitch class -> note name in key ``k``: its scale (minor: raised 6th and 7th too), then sharps or flats."""
    base = _SHARPS if k.sharps > 0 else _FLATS if k.sharps < 0 else _NEUTRAL
    names = dict(enumerate(base))
    if k.mode == "minor":
        for degree in (6, 7):
            raised = k.pitchFromDegree(degree).transpose("A1")
            names[raised.pitchClass] = raised.name
    for p in k.getPitches():
        names[p.pitchClass] = p.name
    return names


def _pitch(midi: int, names: dict[int, str]):
    from music21 import pitch

    p = pitch.Pitch(names[midi % 12] + "4")
    p.octave = 4 + (midi - int(p.midi)) // 12  # B#, Cb: the octave of the letter, not of the sound
    return p


def _rests(start: Fraction, stop: Fraction, bar: Fraction, spq: int) -> list:
    """Rests from step ``start`` to ``stop``: a whole-bar rest for a silent bar, else plain note
    values each starting on a multiple of itself within the bar (no triple-dotted rests)."""
    from music21 import note

    rests, pos = [], start
    while pos < stop:
        bar_start = (pos // bar) * bar
        end = min(stop, bar_start + bar)
        if pos == bar_start and end == bar_start + bar:
            rest = note.Rest(quarterLength=bar / spq)
            rest.fullMeasure = True
            rests.append(rest)
            pos = end
            continue
        while pos < end:
            left, into = (end - pos) / spq, (pos - bar_start) / spq  # quarters
            value = next((v for v in (4, 2, 1, Fraction(1, 2), Fraction(1, 4), Fraction(1, 8))
                          if v <= left and (into / v).denominator == 1), Fraction(1, spq))
            rests.append(note.Rest(quarterLength=value))
            pos += value * spq
    return rests


# --- MusicXML -----------------------------------------------------------------------------------

def _bars(bars, name) -> int | None:
    if bars is not None and (isinstance(bars, bool) or not isinstance(bars, int) or bars < 1):
        raise ConfigError(f"bars must be a whole number >= 1, not {bars!r}", name)
    return bars


def _part(melody: Melody, k, bar_steps: Fraction, bars: int | None, total: Fraction | None = None):
    """One staff: the melody's notes and rests in key ``k``, bars of ``bar_steps`` steps, ``total`` steps long
    (default: to the end of its last bar), cut after ``bars`` bars if it is longer."""
    from music21 import note, stream

    names = _spelling(k)
    spq = melody.steps_per_quarter
    pitches, starts, ends = (a.tolist() for a in melody.notes())
    if total is None:
        total = -(-max(ends, default=0) // bar_steps) * bar_steps  # the last bar filled with rests
    if bars is not None:
        limit = bars * bar_steps
        total = min(total, limit)
        kept = [(p, s, min(e, limit)) for p, s, e in zip(pitches, starts, ends) if s < limit]
        pitches, starts, ends = ([x[i] for x in kept] for i in range(3)) if kept else ([], [], [])
    part = stream.Part()
    now = Fraction(0)
    for p, s, e in zip(pitches, starts, ends):
        part.append(_rests(now, Fraction(s), bar_steps, spq))
        part.append(note.Note(_pitch(p, names), quarterLength=Fraction(e - s, spq)))
        now = Fraction(e)
    part.append(_rests(now, total, bar_steps, spq))
    return part


def _stream(melody: Melody, title, meter, key, bars):
    from music21 import clef, metadata, meter as m21meter, stream

    num, den = _meter(meter, melody)
    k = _key(key, melody)
    bars = _bars(bars, melody.source or None)
    part = _part(melody, k, Fraction(melody.steps_per_quarter * 4 * num, den), bars)
    part.insert(0, m21meter.TimeSignature(f"{num}/{den}"))
    part.insert(0, k)
    part.insert(0, clef.bestClef(part, recurse=True))

    score = stream.Score(id="S1")
    score.insert(0, metadata.Metadata(title=title or ""))
    score.insert(0, part)
    return score


def _export(score, name, spq: int) -> str:
    """MusicXML text of a music21 score, with nothing that changes from run to run."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        xml = GeneralObjectExporter(score).parse().decode("utf-8")
    except Exception as exc:  # music21 raises several kinds (MusicXMLExportException, DurationException)
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScoreError(f"cannot write the melody as MusicXML ({problem}); steps_per_quarter="
                         f"{spq} needs note values a score has", name) from exc
    # What would change from run to run or is not ours: the date, music21's stand-in composer.
    xml = re.sub(r"\s*<encoding-date>[^<]*</encoding-date>", "", xml)
    xml = re.sub(r'\s*<creator type="composer">Music21</creator>', "", xml)
    ids: dict[str, str] = {}  # music21's part ids are random: P1, P2, ... in the order they first appear
    return re.sub(r'id="(P[0-9a-f]{32})"', lambda m: f'id="{ids.setdefault(m.group(1), f"P{len(ids) + 1}")}"', xml)


def melody_musicxml(melody_or_sequence, *, title: str | None = None, meter=None, key=None,
                    bars: int | None = None) -> str:
    """The melody as a MusicXML 4.0 document (a string), written by music21.

    Args:
        melody_or_sequence: a :class:`labkit.melody.Melody`; a ``note_seq.NoteSequence`` or the path
            of a MIDI file gives its tune (:func:`labkit.melody.tune_melody`: the first pitched
            instrument, made monophonic by the skyline).
        title: printed above the score (default: none).
        meter: the time signature, ``"6/8"`` or ``(6, 8)``; default the melody's.
        key: the key signature, ``"D major"``, ``"F#m"``, ``"Bb minor"`` or ``(tonic 0..11, mode)``;
            default the melody's ``key`` and ``mode``.
        bars: write at most the first ``bars`` bars (a note crossing the end is cut there).

    Durations are the melody's steps (``steps_per_quarter`` per quarter note); a note that crosses a
    bar line, or has no single note value (5 sixteenths), is written as tied notes. Rests fill the
    last bar. The document holds no date and no random id: the same input gives the same text.

    Raises:
        NoNotesError: the melody has no notes. MidiReadError: an unreadable MIDI file.
        ConfigError: a bad ``meter``, ``key`` or ``bars``. ScoreError: durations music21 cannot write.

    Example:
        >>> xml = melody_musicxml(Melody.from_notes([62, 66, 69], [0, 4, 8], [4, 8, 16], key=2), meter="3/4")
        >>> xml.count("<measure "), "<fifths>2</fifths>" in xml, "<beats>3</beats>" in xml
        (2, True, True)

    Notebook: 00_welcome_and_setup.ipynb
    """
    melody = _as_melody(melody_or_sequence)
    return _export(_stream(melody, title, meter, key, bars), melody.source or None, melody.steps_per_quarter)


# --- engraving ----------------------------------------------------------------------------------

def _engrave(xml: str, name: str | None) -> tuple[str, int]:
    import verovio

    toolkit = verovio.toolkit()
    toolkit.setOptions({"xmlIdSeed": 1, "scale": SCORE_SCALE, "pageWidth": SCORE_PAGE_WIDTH,
                        "pageHeight": SCORE_PAGE_HEIGHT, "adjustPageHeight": True, "footer": "none",
                        "header": "auto", "breaks": "auto"})
    if not toolkit.loadData(xml) or toolkit.getPageCount() < 1:
        raise ScoreError("Verovio could not read the MusicXML music21 wrote", name)
    return toolkit.renderToSVG(1), int(toolkit.getPageCount())


def show_score(melody_or_sequence, *, title: str | None = None, meter=None, key=None,
               bars: int | None = None) -> Score:
    """The engraved melody as a :class:`Score`, which a notebook shows as staff notation.

    Arguments as :func:`melody_musicxml`. ``score.pages`` says how many pages the whole melody
    fills; ``score.svg`` is the first (ask for fewer ``bars`` to see a long tune's start).

    Example:
        >>> s = show_score(Melody.from_notes([60, 64, 67], [0, 4, 8], [4, 8, 16]))
        >>> s.pages, s._repr_svg_().count('class="notehead"')
        (1, 3)

    Notebook: 00_welcome_and_setup.ipynb
    """
    xml = melody_musicxml(melody_or_sequence, title=title, meter=meter, key=key, bars=bars)
    name = getattr(melody_or_sequence, "source", None) or None
    svg, pages = _engrave(xml, name)
    return Score(svg, xml, pages)


def melody_score(melody_or_sequence, *, title: str | None = None, meter=None, key=None,
                 bars: int | None = None) -> str:
    """Staff notation of a melody as an SVG string: the first page (or the first ``bars`` bars).

    About :data:`SCORE_PAGE_WIDTH` x :data:`SCORE_SCALE` / 100 = 880 pixels wide, as high as its
    systems. Arguments and errors as :func:`melody_musicxml`; the SVG is Verovio's, with one
    ``class="measure"`` group per bar and one ``class="notehead"`` per written note head.

    Example:
        >>> svg = melody_score(Melody.from_notes([60, 62], [0, 4], [4, 12]), meter="2/4")
        >>> svg.count('class="measure"'), svg.count('class="notehead"')
        (2, 3)

    Notebook: 00_welcome_and_setup.ipynb
    """
    return show_score(melody_or_sequence, title=title, meter=meter, key=key, bars=bars).svg


# --- several parts ------------------------------------------------------------------------------

#: Semitones from the tonic of a church mode down to the tonic of its relative major (a chorale in D dorian
#: is written with C major's signature, none).
_MODE_FROM_MAJOR = {"major": 0, "ionian": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
                    "aeolian": 9, "locrian": 11}
#: A four-row setting's staves, top down (labkit.polyphony.harmony.HARMONY_VOICES, a floor above this one).
_SATB = ("Soprano", "Alto", "Tenor", "Bass")
#: The clef of a staff named for a choir's voice (music21's clef classes): the tenor reads the treble clef an
#: octave down, as in printed chorales.
VOICE_CLEFS = {"soprano": "TrebleClef", "alto": "TrebleClef", "tenor": "Treble8vbClef", "bass": "BassClef"}


def _runs(voice, onset) -> tuple[list[int], list[int], list[int]]:
    """A voice on a grid (pitch per frame, -1 silent; onset per frame) as notes: pitches, starts, ends."""
    pitches, starts, ends = [], [], []
    for t, p in enumerate(voice):
        if p >= 0 and pitches and pitches[-1] == p and ends[-1] == t and not onset[t]:
            ends[-1] = t + 1
        elif p >= 0:
            pitches.append(p); starts.append(t); ends.append(t + 1)  # noqa: E702
    return pitches, starts, ends


def _setting_parts(setting) -> tuple[list[Melody], list[str]]:
    """A four-part setting (``voices`` int [V, T] on an eighth-note grid, ``onsets``, ``key``) as melodies."""
    tonic, mode = setting.key
    if mode not in ("major", "minor"):
        tonic, mode = (int(tonic) - _MODE_FROM_MAJOR.get(mode, 0)) % 12, "major"
    name = getattr(setting, "name", "") or ""
    # the meter from the bar positions (frames since the bar line): 8 eighths a bar is 4/4, 6 is 3/4, 3 is 3/8
    position = [int(x) for x in getattr(setting, "bar_position", [])]
    frames = max(position) + 1 if position.count(0) > 1 else 8
    num, den = (frames // 2, 4) if frames % 2 == 0 else (frames, 8)
    melodies = [Melody.from_notes(*_runs([int(p) for p in voice], [bool(o) for o in onset]), steps_per_quarter=2,
                                  key=int(tonic), mode=mode, numerator=num, denominator=den, source=name)
                for voice, onset in zip(setting.voices, setting.onsets)]
    names = list(_SATB) if len(melodies) == 4 else [f"Part {i + 1}" for i in range(len(melodies))]
    return melodies, names


def _sequence_parts(sequence) -> tuple[list[Melody], list[str]]:
    """Each pitched instrument of a NoteSequence (lowest number first) as a melody, made monophonic by the skyline."""
    from labkit.melody import tune_melody

    infos = {int(i.instrument): i.name for i in sequence.instrument_infos}
    melodies, names = [], []
    for number in sorted({int(n.instrument) for n in sequence.notes if not n.is_drum}):
        one = type(sequence)()
        one.CopyFrom(sequence)
        del one.notes[:]
        one.notes.extend(n for n in sequence.notes if int(n.instrument) == number)
        melodies.append(tune_melody(one))
        names.append(infos.get(number) or f"Part {len(names) + 1}")
    return melodies, names


def _as_parts(parts) -> tuple[list[Melody], list[str] | None, str | None]:
    """``(melodies, default names, file name)`` from any input :func:`parts_score` takes."""
    name = None
    if isinstance(parts, (str, os.PathLike)):
        from labkit._common import display_name
        from labkit.midi_io import read_midi

        name, parts = display_name(parts), read_midi(parts)
    if hasattr(parts, "voices") and hasattr(parts, "onsets") and hasattr(parts, "key"):
        melodies, names = _setting_parts(parts)
    elif hasattr(parts, "notes") and hasattr(parts, "total_time"):
        melodies, names = _sequence_parts(parts)
        name = name or getattr(parts, "filename", None) or None
    elif isinstance(parts, Melody):
        melodies, names = [parts], None
    elif isinstance(parts, (list, tuple)):
        bad = next((p for p in parts if not isinstance(p, Melody)), None)
        if bad is not None:
            raise ConfigError("a list of parts holds labkit.melody.Melody objects, not "
                              f"{type(bad).__name__}")
        melodies, names = list(parts), None
    else:
        raise ConfigError("a score of parts needs a list of labkit.melody.Melody, a note_seq.NoteSequence, a MIDI "
                          f"file or a four-part setting, not {type(parts).__name__}")
    if not melodies:
        raise NoNotesError("no parts: a score needs at least one part with notes", name)
    return melodies, names, name


def _part_clef(part, name: str | None):
    """A staff's clef: a choir's as four-part scores write it (:data:`VOICE_CLEFS`, by the staff's name),
    else music21's best for its notes (treble or bass, as :func:`melody_musicxml`)."""
    from music21 import clef

    kind = VOICE_CLEFS.get((name or "").strip().lower())
    return getattr(clef, kind)() if kind else clef.bestClef(part, recurse=True)


def parts_score(parts, *, names=None, title: str | None = None, meter=None, key=None,
                bars: int | None = None) -> Score:
    """Several voices at once, one staff each, bracketed, sharing a meter and a key: a :class:`Score`.

    Args:
        parts: a list of :class:`labkit.melody.Melody` on one grid (the same ``steps_per_quarter``; step 0 of
            each is the first bar line), top staff first; or a ``note_seq.NoteSequence`` (or the path of a MIDI
            file) with several instruments, one staff per pitched instrument (lowest number on top, named by
            its ``instrument_infos``; an instrument's chords keep their top notes, the skyline): what
            :func:`labkit.polyphony.harmony_model.harmonize_sequence` returns first; or a four-part setting
            (:class:`labkit.polyphony.harmony.ChoraleSetting`: ``voices`` int ``[4, T]`` on its eighth-note
            grid, ``onsets``, ``key``), staves named Soprano, Alto, Tenor, Bass.
        names: one name per staff, printed at its left (default: as above; none for a list of melodies).
        title, meter, key, bars: as :func:`melody_musicxml`; the meter and key default to the first part's
            (a setting's church mode is written with its relative major's signature; its meter is read from
            its bar positions, 4/4 where they do not tell).

    A staff named Soprano, Alto, Tenor or Bass gets its voice's clef (:data:`VOICE_CLEFS`: the tenor's is the
    treble clef an octave down); any other the clef that suits its range. Rests fill every
    staff to the end of the longest part's last bar. ``score.musicxml`` holds one ``<part>`` per staff. The
    same parts give the same MusicXML and SVG, byte for byte.

    Raises:
        NoNotesError: no parts, or a part with no notes (named by its number and name).
        ConfigError: parts on different grids, a bad ``names``, ``meter``, ``key`` or ``bars``, or an input of
            another type. MidiReadError: an unreadable MIDI file. ScoreError: durations music21 cannot write.

    Example (a cadence in C, soprano over bass, a half note each; 2 staves, 4 note heads):
        >>> top, low = Melody.from_notes([62, 60], [0, 8], [8, 16]), Melody.from_notes([43, 48], [0, 8], [8, 16])
        >>> s = parts_score([top, low], names=["S", "B"])
        >>> s.musicxml.count("<part "), s.svg.count('class="staff"'), s.svg.count('class="notehead"')
        (2, 2, 4)

    Notebook: 08_polyphony.ipynb
    """
    from music21 import clef, layout, metadata, meter as m21meter, stream

    melodies, default_names, source = _as_parts(parts)
    names = default_names if names is None else names
    if names is not None:
        if isinstance(names, str) or len(names) != len(melodies) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"names must be one string per part ({len(melodies)}), not {names!r}", source)
        names = list(names)
    first = melodies[0]
    for i, melody in enumerate(melodies):
        what = f"part {i + 1}" + (f" ({names[i]})" if names else "")
        if melody.steps_per_quarter != first.steps_per_quarter:
            raise ConfigError(f"parts are on different grids: {what} has {melody.steps_per_quarter} steps per "
                              f"quarter, part 1 has {first.steps_per_quarter}", source)
        if not (melody.events >= 0).any():
            raise NoNotesError(f"{what} has no notes: nothing to write on its staff", source)
    num, den = _meter(meter, first)
    k = _key(key, first)
    bars = _bars(bars, source)
    spq = first.steps_per_quarter
    bar_steps = Fraction(spq * 4 * num, den)
    end = max(int(m.notes()[2].max()) for m in melodies)
    total = -(-end // bar_steps) * bar_steps                       # the longest part's last bar
    if bars is not None:
        total = min(total, bars * bar_steps)

    score = stream.Score(id="S1")
    score.insert(0, metadata.Metadata(title=title or ""))
    staves = []
    for i, melody in enumerate(melodies):
        part = _part(melody, k, bar_steps, bars, total)
        part.insert(0, m21meter.TimeSignature(f"{num}/{den}"))
        part.insert(0, _key(key, first))
        part.insert(0, _part_clef(part, names[i] if names else None))
        if names:
            part.partName = names[i]
        score.insert(0, part)
        staves.append(part)
    if len(staves) > 1:
        score.insert(0, layout.StaffGroup(staves, symbol="bracket", barTogether=True))
    xml = _export(score, source, spq)
    svg, pages = _engrave(xml, source)
    return Score(svg, xml, pages)
