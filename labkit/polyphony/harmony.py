"""Four-part settings on a frame grid, and the textbook rules they are measured by (issue 17).

A four-part setting (a chorale) is held as ``voices``, int ``[4, T]``: row 0..3 is soprano, alto, tenor,
bass (:data:`HARMONY_VOICES`), column ``t`` the MIDI pitch sounding at the start of frame ``t``, or
:data:`VOICE_REST`. A frame is an eighth note (:data:`HARMONY_STEPS_PER_QUARTER` = 2), as in the JSB Chorales
benchmark (Boulanger-Lewandowski et al. 2012): the chorales move in quarter notes with eighth-note passing
tones; sixteenths are 2 % of their notes (of 117,000 in the shipped corpus), and an eighth grid halves the
sequences a model reads (Coconet, Huang et al. 2017, and DeepBach, Hadjeres et al. 2017, use sixteenths).
Where two short notes share a frame, the one that starts later in it is kept (the frame shows the pitch
sounding at its start, unless a note begins inside it). ``onsets`` (bool ``[4, T]``) marks the frames where
a voice's note begins, so a repeated note is not a held one. ``bar_position`` (int ``[T]``) counts frames
from the last bar line (time 0 of a MIDI file is a bar line; the first time signature, 4/4 without one).

The corpus's 400 chorales store one voice per instrument, named Soprano, Alto, Tenor and Bass
(:func:`chorale_settings` checks it and skips, with a reason, a chorale that has not exactly four voices).

Rules measured by :func:`harmony_counts` (each a count and the number of chances it had; :func:`harmony_rates`
divides), as a harmony textbook states them for four-part writing (E. Aldwell and C. Schachter, *Harmony
and Voice Leading*, chapters 4-5; S. Kostka and D. Payne, *Tonal Harmony*, chapter 5):

* parallel fifths, parallel octaves or unisons: two voices a fifth (an octave, a unison; compound intervals
  too) apart in frame ``t`` and again in frame ``t + 1``, both having moved in the same direction; counted
  per *voice-pair move* (a frame pair in which both voices of one of the six pairs move). Contrary motion
  (a fifth to a twelfth in opposite directions) is not counted.
* voice crossing: an upper voice below the next lower one (S < A, A < T, T < B), per frame and adjacent pair
  where both sound (a unison is not a crossing).
* range: a voice outside :data:`HARMONY_VOICE_RANGES` (S C4-G5, A G3-D5, T C3-G4, B E2-C4, the ranges of
  Aldwell and Schachter), per sounding voice-frame, all four voices.
* bass outside the key: a bass frame whose pitch class is not in the key's scale (:func:`key_scale`; a
  minor key also allows the raised 6th and 7th of melodic and harmonic minor), per sounding bass frame.

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from labkit._common import display_name
from labkit.errors import ConfigError, CorpusError

#: The four voices, top down: row ``i`` of ``voices`` and track ``i`` of a harmonized MIDI file.
HARMONY_VOICES: tuple[str, ...] = ("Soprano", "Alto", "Tenor", "Bass")
#: Lowest and highest MIDI pitch of each voice (Aldwell and Schachter): S C4-G5, A G3-D5, T C3-G4, B E2-C4.
HARMONY_VOICE_RANGES: dict[str, tuple[int, int]] = {"Soprano": (60, 79), "Alto": (55, 74), "Tenor": (48, 67),
                                                    "Bass": (40, 60)}
#: A frame of ``voices`` where the voice is silent.
VOICE_REST = -1
#: Default sampling temperature of the chorale model (:mod:`labkit.polyphony.harmony_model`), here so that the
#: command line can show it without importing JAX.
DEFAULT_HARMONY_TEMPERATURE = 0.8
#: Frames per quarter note: one frame is an eighth note.
HARMONY_STEPS_PER_QUARTER = 2
#: Frames from the bar line that bar positions tell apart (later ones count as the last): 16 eighths = 4/2.
MAX_BAR_FRAMES = 16
#: Semitones above the tonic in each scale (``minor``: natural minor plus the raised 6th and 7th).
HARMONY_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11), "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 9, 10, 11), "aeolian": (0, 2, 3, 5, 7, 8, 9, 10, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "phrygian": (0, 1, 3, 5, 7, 8, 10), "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10), "locrian": (0, 1, 3, 5, 6, 8, 10)}
#: The names of :func:`harmony_rates`, each ``(rate name, count, chances)``: the rules of the module docstring.
HARMONY_RULES: tuple[tuple[str, str, str], ...] = (
    ("parallel_fifths", "parallel_fifths", "pair_moves"),
    ("parallel_octaves", "parallel_octaves", "pair_moves"),
    ("voice_crossing", "crossings", "adjacent_frames"),
    ("out_of_range", "out_of_range", "voice_frames"),
    ("bass_out_of_key", "bass_out_of_key", "bass_frames"))
_TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@dataclasses.dataclass
class ChoraleSetting:
    """One four-part setting on the frame grid (see the module docstring).

    Attributes:
        name: the tune's id (or file name).
        voices: int ``[4, T]`` MIDI pitches (:data:`VOICE_REST` = silent), soprano first.
        onsets: bool ``[4, T]``: a note of that voice begins in the frame.
        bar_position: int ``[T]`` frames since the last bar line, ``0..MAX_BAR_FRAMES - 1``.
        key: ``(tonic 0..11, mode)``, the mode a key of :data:`HARMONY_SCALES`.
        split: the corpus split (``train``, ``valid``, ``test``) or ``""``.
    """
    name: str
    voices: np.ndarray
    onsets: np.ndarray
    bar_position: np.ndarray
    key: tuple[int, str]
    split: str = ""


def manifest_key(text: str) -> tuple[int, str]:
    """A key as the manifest writes it (``"F# minor"``, ``"Bb major"``, ``"A dorian"``): ``(tonic, mode)``.

    Example:
        >>> manifest_key("F# minor"), manifest_key("Bb major"), manifest_key("A dorian")
        ((6, 'minor'), (10, 'major'), (9, 'dorian'))

    Notebook: 08_polyphony.ipynb
    """
    match = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s+([a-z]+)\s*", str(text))
    if not match or match.group(3) not in HARMONY_SCALES:
        raise ConfigError(f"not a key such as 'G major' or 'F# minor': {text!r}")
    tonic = _TONICS[match.group(1).upper()] + {"#": 1, "b": -1, "": 0}[match.group(2)]
    return tonic % 12, match.group(3)


def key_scale(tonic: int, mode: str) -> frozenset[int]:
    """The pitch classes of a key's scale (:data:`HARMONY_SCALES`; minor with the raised 6th and 7th).

    Example:
        >>> sorted(key_scale(9, "minor")), sorted(key_scale(7, "major"))
        ([0, 2, 4, 5, 6, 7, 8, 9, 11], [0, 2, 4, 6, 7, 9, 11])

    Notebook: 08_polyphony.ipynb
    """
    if mode not in HARMONY_SCALES:
        raise ConfigError(f"unknown mode {mode!r}; known: {', '.join(HARMONY_SCALES)}")
    return frozenset((int(tonic) + s) % 12 for s in HARMONY_SCALES[mode])


def frames_per_bar(numerator: int = 4, denominator: int = 4, steps_per_quarter: int = HARMONY_STEPS_PER_QUARTER
                   ) -> int:
    """Frames in one bar of a time signature (at least 1; 5/16 at eighths rounds to 2).

    Example:
        >>> frames_per_bar(4, 4), frames_per_bar(3, 4), frames_per_bar(12, 8), frames_per_bar(3, 2)
        (8, 6, 12, 12)

    Notebook: 08_polyphony.ipynb
    """
    return max(1, int(round(numerator * 4 / max(denominator, 1) * steps_per_quarter)))


def bar_positions(num_frames: int, bar_frames: int) -> np.ndarray:
    """int ``[num_frames]``: each frame's distance from the last bar line, at most ``MAX_BAR_FRAMES - 1``.

    Example:
        >>> bar_positions(10, 6).tolist()
        [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]

    Notebook: 08_polyphony.ipynb
    """
    return np.minimum(np.arange(int(num_frames)) % max(int(bar_frames), 1), MAX_BAR_FRAMES - 1).astype(np.int32)


def paint_voice(pitches, starts, ends, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """One voice's notes (``[start, end)`` in frames) on the grid: ``(pitch [T] or VOICE_REST, onset [T])``.

    Notes are painted in the order of their starts, so where two share a frame the later one is kept.

    Example:
        >>> v, o = paint_voice([60, 62, 64], [0, 2, 2], [2, 3, 4], 5)
        >>> v.tolist(), o.astype(int).tolist()
        ([60, 60, 64, 64, -1], [1, 0, 1, 0, 0])

    Notebook: 08_polyphony.ipynb
    """
    voice = np.full(int(num_frames), VOICE_REST, np.int32)
    onset = np.zeros(int(num_frames), bool)
    order = np.argsort(np.asarray(starts), kind="stable")
    for i in order:
        start, end = int(starts[i]), max(int(ends[i]), int(starts[i]) + 1)
        if start >= num_frames:
            continue
        voice[start:end] = int(pitches[i])
        onset[start:end] = False
        onset[start] = True
    return voice, onset


def _time_signature(sequence) -> tuple[int, int]:
    for ts in sorted(sequence.time_signatures, key=lambda t: t.time):
        if ts.numerator > 0 and ts.denominator > 0:
            return int(ts.numerator), int(ts.denominator)
    return 4, 4


def sequence_setting(sequence, name: str = "", *, key: tuple[int, str] | None = None, split: str = ""
                     ) -> ChoraleSetting | None:
    """A four-voice ``NoteSequence`` (one instrument per voice, ordered top down by mean pitch) on the grid.

    Returns ``None`` when the sequence has not exactly four instruments with pitched notes. The grid starts at
    time 0 (a bar line); ``key`` defaults to the first key signature, or C major.

    Notebook: 08_polyphony.ipynb
    """
    from labkit.melody import quantize

    notes = [n for n in quantize(sequence, HARMONY_STEPS_PER_QUARTER).notes if not n.is_drum]
    parts = sorted({n.instrument for n in notes})
    if len(parts) != 4:
        return None
    by_part = {p: [n for n in notes if n.instrument == p] for p in parts}
    parts.sort(key=lambda p: -np.mean([n.pitch for n in by_part[p]]))
    num_frames = max(n.quantized_end_step for n in notes)
    voices, onsets = [], []
    for p in parts:
        v, o = paint_voice([n.pitch for n in by_part[p]], [n.quantized_start_step for n in by_part[p]],
                           [n.quantized_end_step for n in by_part[p]], num_frames)
        voices.append(v)
        onsets.append(o)
    if key is None:
        signature = sorted(sequence.key_signatures, key=lambda k: k.time)
        key = (int(signature[0].key) % 12, "minor" if signature[0].mode == 1 else "major") if signature else (0, "major")
    return ChoraleSetting(name, np.stack(voices), np.stack(onsets),
                          bar_positions(num_frames, frames_per_bar(*_time_signature(sequence))), key, split)


def chorale_settings(split: str | None = None, *, max_tunes: int | None = None, root=None
                     ) -> tuple[list[ChoraleSetting], list[tuple[str, str]]]:
    """The shipped corpus's Bach chorales as four-voice settings: ``(settings, skipped)``.

    ``split``: one of the manifest's splits, or None for all; ``max_tunes``: at most this many. ``skipped``
    lists ``(id, reason)`` for chorales without exactly four voices (none in the shipped corpus).
    The key is the manifest's ``key`` column.

    Example:
        >>> settings, skipped = chorale_settings("test", max_tunes=1)     # doctest: +SKIP
        >>> settings[0].voices.shape[0], skipped                          # doctest: +SKIP
        (4, [])

    Notebook: 08_polyphony.ipynb
    """
    from labkit import corpus

    chorales = corpus.select(corpus.load_manifest(root), collections="bach")
    if split is not None:
        chorales = chorales[chorales["split"] == split]
    if max_tunes is not None:
        chorales = chorales.iloc[:max_tunes]
    settings, skipped = [], []
    for _, row in chorales.iterrows():
        sequence = corpus.read_tune(row, root)
        voices = {n.instrument for n in sequence.notes if not n.is_drum}
        setting = sequence_setting(sequence, row["id"], key=manifest_key(row["key"]), split=row["split"])
        if setting is None:
            skipped.append((row["id"], f"{len(voices)} voices, not 4"))
        else:
            settings.append(setting)
    if not settings:
        raise CorpusError(f"the corpus holds no four-voice chorales{'' if split is None else ' in ' + split}")
    return settings, skipped


def harmony_counts(voices, key: tuple[int, str]) -> dict[str, int]:
    """Count the rule breaks of a setting ``voices`` int ``[4, T]`` (soprano first) in ``key``.

    Returns ``{count name: int}``: ``parallel_fifths``, ``parallel_octaves`` (and unisons) and their chances
    ``pair_moves``; ``crossings`` of ``adjacent_frames``; ``out_of_range`` of ``voice_frames``;
    ``bass_out_of_key`` of ``bass_frames`` (the rules of the module docstring).

    Example (soprano and bass a twelfth apart, both rising a step: one parallel fifth; the tenor holds, so
    three pairs move):
        >>> v = np.array([[67, 69], [64, 65], [60, 60], [48, 50]])
        >>> c = harmony_counts(v, (0, "major"))
        >>> c["parallel_fifths"], c["pair_moves"], c["parallel_octaves"], c["crossings"]
        (1, 3, 0, 0)

    Notebook: 08_polyphony.ipynb
    """
    v = np.asarray(voices, np.int64)
    if v.ndim != 2 or v.shape[0] != 4:
        raise ConfigError(f"a four-part setting is int [4, frames], got shape {v.shape}")
    counts = dict.fromkeys(["parallel_fifths", "parallel_octaves", "pair_moves", "crossings", "adjacent_frames",
                            "out_of_range", "voice_frames", "bass_out_of_key", "bass_frames"], 0)
    sounding = v != VOICE_REST
    if v.shape[1] >= 2:
        a, b = v[:, :-1], v[:, 1:]
        both = sounding[:, :-1] & sounding[:, 1:]
        step = np.where(both, b - a, 0)
        for i in range(4):
            for j in range(i + 1, 4):
                moves = (step[i] != 0) & (step[j] != 0)
                similar = moves & (np.sign(step[i]) == np.sign(step[j]))
                before, after = np.abs(a[i] - a[j]) % 12, np.abs(b[i] - b[j]) % 12
                counts["pair_moves"] += int(moves.sum())
                counts["parallel_fifths"] += int((similar & (before == 7) & (after == 7)).sum())
                counts["parallel_octaves"] += int((similar & (before == 0) & (after == 0)).sum())
    for upper in range(3):
        both = sounding[upper] & sounding[upper + 1]
        counts["adjacent_frames"] += int(both.sum())
        counts["crossings"] += int((both & (v[upper] < v[upper + 1])).sum())
    for i, name in enumerate(HARMONY_VOICES):
        low, high = HARMONY_VOICE_RANGES[name]
        counts["voice_frames"] += int(sounding[i].sum())
        counts["out_of_range"] += int((sounding[i] & ((v[i] < low) | (v[i] > high))).sum())
    scale = np.zeros(12, bool)
    scale[list(key_scale(*key))] = True
    bass = v[3][sounding[3]]
    counts["bass_frames"] += int(len(bass))
    counts["bass_out_of_key"] += int((~scale[bass % 12]).sum())
    return counts


def sum_counts(counts) -> dict[str, int]:
    """The sum of several :func:`harmony_counts` results (a whole test split's counts).

    Notebook: 08_polyphony.ipynb
    """
    total: dict[str, int] = {}
    for c in counts:
        for k, n in c.items():
            total[k] = total.get(k, 0) + int(n)
    return total


def harmony_rates(counts: dict[str, int]) -> dict[str, float]:
    """Each rule's rate, count over chances (:data:`HARMONY_RULES`; 0 where there were no chances).

    Example:
        >>> v = np.array([[67, 69], [64, 65], [60, 60], [48, 50]])
        >>> round(harmony_rates(harmony_counts(v, (0, "major")))["parallel_fifths"], 4)
        0.3333

    Notebook: 08_polyphony.ipynb
    """
    return {name: (counts[n] / counts[d] if counts[d] else 0.0) for name, n, d in HARMONY_RULES}


def melody_chord_check(sequence, path=None, *, tolerance_quarters: float = 0.125) -> None:
    """Raise :class:`~labkit.errors.ConfigError` (naming ``path``) if two pitched notes sound at once.

    A note that begins before the previous one ends by more than ``tolerance_quarters`` (a 32nd note: a
    legato overlap is not a chord) makes a chord; the message says at which time (seconds) and which pitches.

    Example:
        >>> import note_seq
        >>> s = note_seq.NoteSequence(); _ = s.tempos.add(qpm=120)
        >>> _ = s.notes.add(pitch=60, start_time=0, end_time=1, velocity=80)
        >>> _ = s.notes.add(pitch=64, start_time=0.5, end_time=1, velocity=80)
        >>> melody_chord_check(s, "m.mid")
        Traceback (most recent call last):
        ...
        labkit.errors.ConfigError: m.mid: holds a chord at 0.50 s (C4 and E4 sound at once): harmonize needs a melody, one note at a time

    Notebook: 08_polyphony.ipynb
    """
    from labkit._common import pitch_name

    qpm = sequence.tempos[0].qpm if sequence.tempos else 120.0
    tolerance = tolerance_quarters * 60.0 / qpm
    notes = sorted((n for n in sequence.notes if not n.is_drum), key=lambda n: (n.start_time, n.pitch))
    latest = None
    for note in notes:
        if latest is not None and note.start_time < latest.end_time - tolerance:
            raise ConfigError(f"holds a chord at {note.start_time:.2f} s ({pitch_name(latest.pitch)} and "
                              f"{pitch_name(note.pitch)} sound at once): harmonize needs a melody, one note at a "
                              "time", None if path is None else display_name(path))
        if latest is None or note.end_time > latest.end_time:
            latest = note
