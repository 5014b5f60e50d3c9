"""Monophonic melodies: the course's central data type, and the steps that make them.

A :class:`Melody` follows Magenta's ``melodies_lib.Melody`` convention: one
integer event per quantized step,

* ``0..127``  note-on of that MIDI pitch (the previous note, if any, ends here),
* ``-1``      note-off (:data:`NOTE_OFF`): silence starts here,
* ``-2``      no event (:data:`NO_EVENT`): whatever sounds goes on sounding.

So ``[60, -2, -2, -2, 62, -2, -1, -2]`` at 4 steps per quarter is a quarter
note C4, an eighth note D4 and a quarter rest.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from labkit._common import KEY_TONIC_NAMES  # noqa: F401 - key names, read from here by notebooks
from labkit.errors import ConfigError, EncodingError

NOTE_OFF = -1
NO_EVENT = -2
MIN_MIDI_PITCH = 0
MAX_MIDI_PITCH = 127
#: The tempo when none is given (quarter notes per minute): a melody's, a generated file's, an ABC tune's without ``Q:``.
DEFAULT_QPM = 120.0


@dataclass(frozen=True, eq=False)
class Melody:
    """A monophonic line on a grid of quantized steps (Magenta's event convention).

    Attributes:
        events: int32 array ``[num_steps]`` of note-on pitches, ``NOTE_OFF`` or ``NO_EVENT``.
        steps_per_quarter: grid resolution (4 = sixteenth notes).
        qpm: tempo in quarter notes per minute, used only to turn steps into seconds.
        key: tonic pitch class 0..11 of the key (0 = C), as far as it is known.
        mode: ``"major"`` or ``"minor"``.
        numerator, denominator: the time signature.
        source: where the melody came from (a file name, a tune id), for messages.

    Example:
        >>> m = Melody.from_notes([60, 62], [0, 4], [4, 6])
        >>> m.events.tolist()
        [60, -2, -2, -2, 62, -2, -1]
    """

    events: np.ndarray
    steps_per_quarter: int = 4
    qpm: float = DEFAULT_QPM
    key: int = 0
    mode: str = "major"
    numerator: int = 4
    denominator: int = 4
    source: str = field(default="", compare=False)

    def __post_init__(self):
        events = np.asarray(self.events, dtype=np.int32).reshape(-1)
        if events.size and (events.min() < NO_EVENT or events.max() > MAX_MIDI_PITCH):
            bad = events[(events < NO_EVENT) | (events > MAX_MIDI_PITCH)][0]
            raise EncodingError(f"melody event {int(bad)} is neither a pitch 0..127, -1 nor -2",
                                self.source or None)
        object.__setattr__(self, "events", events)

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_notes(cls, pitches, start_steps, end_steps, num_steps: int | None = None, **kwargs) -> "Melody":
        """Build a melody from notes given as pitches and [start, end) steps.

        Notes must not overlap (a note may start where the previous one ends).
        A note-off is written after the last note, and wherever a rest begins.
        ``num_steps`` (default: one past the last end) pads the tail with ``NO_EVENT``.
        """
        pitches = np.asarray(pitches, dtype=np.int64)
        starts = np.asarray(start_steps, dtype=np.int64)
        ends = np.asarray(end_steps, dtype=np.int64)
        if not (len(pitches) == len(starts) == len(ends)):
            raise EncodingError("pitches, start_steps and end_steps differ in length")
        order = np.argsort(starts, kind="stable")
        pitches, starts, ends = pitches[order], starts[order], ends[order]
        if len(pitches) and ((ends <= starts).any() or (starts[1:] < ends[:-1]).any()):
            raise EncodingError("notes overlap or have no length; a melody is monophonic",
                                kwargs.get("source") or None)
        last = int(ends[-1]) + 1 if len(ends) else 0
        n = last if num_steps is None else int(num_steps)
        if n < last:
            raise EncodingError(f"num_steps={n} is shorter than the notes ({last} steps)")
        events = np.full(n, NO_EVENT, dtype=np.int32)
        events[ends[ends < n]] = NOTE_OFF
        events[starts] = pitches  # a note-on overrides a note-off at the same step
        return cls(events, **kwargs)

    # --- views --------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(self.events.shape[0])

    def notes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pitches, start_steps, end_steps)`` of the notes, as int arrays."""
        ev = self.events
        onsets = np.flatnonzero(ev >= 0)
        pitches = ev[onsets]
        boundaries = np.append(np.flatnonzero(ev != NO_EVENT), len(ev))  # every step where something changes
        ends = boundaries[np.searchsorted(boundaries, onsets, side="right")]  # the next one after each onset
        return pitches.astype(np.int32), onsets.astype(np.int32), ends.astype(np.int32)

    @property
    def pitches(self) -> np.ndarray:
        """The pitch of each note, in order."""
        return self.events[self.events >= 0]

    def __len__(self) -> int:
        return self.num_steps

    def __eq__(self, other) -> bool:
        if not isinstance(other, Melody):
            return NotImplemented
        return (np.array_equal(self.events, other.events)
                and self.steps_per_quarter == other.steps_per_quarter)

    def __repr__(self) -> str:
        return (f"Melody({len(self.pitches)} notes, {self.num_steps} steps at "
                f"{self.steps_per_quarter}/quarter, source={self.source!r})")

    def replace(self, **changes) -> "Melody":
        """A copy with some attributes changed (``dataclasses.replace``)."""
        return replace(self, **changes)


# =====================================================================================
# Notes: one table for sequences and melodies, in seconds (what audio and viz read)
# =====================================================================================
#: Velocity given to the notes of a :class:`Melody` when it is heard or drawn (Magenta's default).
MELODY_VELOCITY = 100


class Notes(NamedTuple):
    """The notes of a sequence or melody, one array entry per note (all arrays ``[num_notes]``).

    ``pitch`` (MIDI 0..127), ``velocity`` (1..127), ``start`` and ``end`` (seconds),
    ``program`` (General MIDI 0..127), ``is_drum`` (bool), ``instrument`` (the track id).
    """

    pitch: np.ndarray
    velocity: np.ndarray
    start: np.ndarray
    end: np.ndarray
    program: np.ndarray
    is_drum: np.ndarray
    instrument: np.ndarray


def as_notes(sequence_or_melody, *, program: int | None = None) -> Notes:
    """The notes of a ``note_seq.NoteSequence`` or a :class:`labkit.melody.Melody`, in seconds.

    A melody's steps become seconds as ``steps * 60 / (qpm * steps_per_quarter)``;
    its notes get velocity :data:`MELODY_VELOCITY` and program 0 (piano).
    ``program`` (0..127), when given, replaces the program of every pitched note.
    Notes with no length are dropped.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> n = as_notes(Melody.from_notes([60, 62], [0, 4], [4, 6], qpm=120))
    >>> n.start.tolist(), n.end.tolist()
    ([0.0, 0.5], [0.5, 0.75])
    """
    if program is not None and not (isinstance(program, (int, np.integer)) and 0 <= program <= 127):
        raise ConfigError(f"program must be a General MIDI program 0..127, not {program!r}")
    if isinstance(sequence_or_melody, Melody):
        m = sequence_or_melody
        pitches, starts, ends = m.notes()
        seconds_per_step = 60.0 / (float(m.qpm) * m.steps_per_quarter)
        if not (math.isfinite(seconds_per_step) and seconds_per_step > 0):
            raise ConfigError(f"melody tempo qpm={m.qpm} and steps_per_quarter={m.steps_per_quarter} "
                              "give no positive step length", m.source or None)
        n = len(pitches)
        notes = Notes(pitches.astype(np.int32), np.full(n, MELODY_VELOCITY, np.int32),
                      starts * seconds_per_step, ends * seconds_per_step,
                      np.zeros(n, np.int32), np.zeros(n, bool), np.zeros(n, np.int32))
    elif hasattr(sequence_or_melody, "notes") and hasattr(sequence_or_melody, "total_time"):
        ns = sequence_or_melody.notes
        notes = Notes(np.array([x.pitch for x in ns], np.int32),
                      np.array([x.velocity for x in ns], np.int32),
                      np.array([x.start_time for x in ns], np.float64),
                      np.array([x.end_time for x in ns], np.float64),
                      np.array([x.program for x in ns], np.int32),
                      np.array([x.is_drum for x in ns], bool),
                      np.array([x.instrument for x in ns], np.int32))
    else:
        raise ConfigError("expected a note_seq.NoteSequence or a labkit.melody.Melody, "
                          f"not {type(sequence_or_melody).__name__}")
    if len(notes.pitch) and not (np.isfinite(notes.start).all() and np.isfinite(notes.end).all()):
        raise ConfigError("a note has a start or end time that is not a finite number")
    keep = (notes.end > notes.start) & (notes.pitch >= 0) & (notes.pitch <= 127)
    notes = Notes(*(a[keep] for a in notes))
    notes = notes._replace(start=np.maximum(notes.start, 0.0), velocity=np.clip(notes.velocity, 1, 127))
    if program is not None:
        notes = notes._replace(program=np.where(notes.is_drum, notes.program, program).astype(np.int32))
    return notes


# =====================================================================================
# Preprocessing: quantize, extract melodies, transpose, keys, phrases.
#
# note_seq is imported inside the functions that need it, so that
# ``from labkit.melody import Melody`` stays fast (note_seq takes about a second).
# =====================================================================================

#: Krumhansl & Kessler's (1982) probe-tone key profiles, as used in Krumhansl's
#: key-finding algorithm (C. L. Krumhansl, *Cognitive Foundations of Musical Pitch*,
#: Oxford University Press, 1990, ch. 4). Index 0 is the tonic.
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Key names: ``f"{KEY_TONIC_NAMES[melody.key]} {melody.mode}"`` is ``"Eb major"`` (the table is
# labkit._common's, imported above, so that ``from labkit.melody import KEY_TONIC_NAMES`` works).

# NoteSequence.KeySignature.Mode -> the two modes a Melody knows, by the quality of the third.
_MODE_FROM_PROTO = {0: "major", 1: "minor", 2: "major", 3: "major", 4: "minor", 5: "minor",
                    6: "major", 7: "minor"}


def _name(sequence) -> str | None:
    """The file name of a sequence for messages (``filename``, else ``id``), or None."""
    return getattr(sequence, "filename", "") or getattr(sequence, "id", "") or None


def _check_steps_per_quarter(steps_per_quarter, name=None) -> int:
    from labkit.errors import ConfigError

    try:
        ok = not isinstance(steps_per_quarter, bool) and int(steps_per_quarter) == steps_per_quarter >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"steps_per_quarter must be a positive integer, got {steps_per_quarter!r}", name)
    return int(steps_per_quarter)


def _tempo_segments(sequence, name):
    """Tempo map of a sequence as ``(times, qpms)``: float arrays, first time 0.

    MIDI's implicit 120 qpm holds before the first tempo event; consecutive
    segments with the same qpm are merged (so that one tempo gives exactly
    note_seq's arithmetic).
    """
    from labkit.errors import MidiValueError

    tempos = sorted(((t.time, t.qpm) for t in sequence.tempos), key=lambda x: x[0])
    for time, qpm in tempos:
        if not (np.isfinite(qpm) and qpm > 0):
            raise MidiValueError(f"tempo of {qpm} qpm at {time:.2f} s; a tempo must be positive", name)
    if not tempos:
        tempos = [(0.0, 120.0)]
    elif tempos[0][0] > 0:
        tempos.insert(0, (0.0, 120.0))
    else:
        # several tempo events at time 0: the last one written is the one in force
        at_zero = [q for t, q in tempos if t <= 0]
        tempos = [(0.0, at_zero[-1])] + [(t, q) for t, q in tempos if t > 0]
    times, qpms = [tempos[0][0]], [tempos[0][1]]
    for t, q in tempos[1:]:
        if q == qpms[-1]:
            continue
        if t == times[-1]:
            qpms[-1] = q
            continue
        times.append(t)
        qpms.append(q)
    return np.array(times, dtype=np.float64), np.array(qpms, dtype=np.float64)


def _seconds_to_steps(seconds, times, qpms, steps_per_quarter) -> np.ndarray:
    """Quantize times in seconds to steps through a tempo map, rounding as note_seq does.

    With one tempo this is exactly note_seq's ``quantize_to_step``:
    ``floor(seconds * steps_per_second + 0.5)``.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    rates = steps_per_quarter * qpms / 60.0  # steps per second in each segment
    if len(times) == 1:
        exact = seconds * rates[0]
    else:
        starts = np.concatenate([[0.0], np.cumsum(np.diff(times) * rates[:-1])])  # steps at each change
        seg = np.searchsorted(times, seconds, side="right") - 1
        seg = np.clip(seg, 0, len(times) - 1)
        exact = starts[seg] + (seconds - times[seg]) * rates[seg]
    return np.floor(exact + 0.5).astype(np.int64)


def _is_relative_quantized(sequence) -> bool:
    return sequence.quantization_info.steps_per_quarter > 0


def quantize(sequence, steps_per_quarter: int = 4):
    """Quantize a ``NoteSequence`` to ``steps_per_quarter`` steps per quarter note.

    Note starts and ends are snapped to the nearest step (note_seq's rule:
    ``floor(quarters * steps_per_quarter + 0.5)``); a note that would get no
    length lasts one step. The result is a copy with ``quantized_start_step`` /
    ``quantized_end_step`` set (``note_seq.sequences_lib.quantize_note_sequence``).

    note_seq's quantizer refuses some real-world files; this function does not:

    * **tempo changes**: steps are counted through the whole tempo map (a quarter
      note is ``steps_per_quarter`` steps at every tempo), so the grid stays the
      notated one. The result keeps only the first tempo, moved to time 0, as
      note_seq's relative quantization requires one tempo; note times in seconds
      are unchanged.
    * **time-signature changes**, or a time signature note_seq refuses (numerator
      0, denominator not a power of 2): these do not affect where steps fall, so
      the result simply keeps the first time signature (time 0), or 4/4 when the
      first one is invalid.

    Args:
        sequence: a ``note_seq.NoteSequence`` (times in seconds).
        steps_per_quarter: grid resolution, a positive int (4 = sixteenth notes).

    Returns:
        A new, relatively quantized ``NoteSequence``.

    Raises:
        MidiValueError: a note or event at a negative time, or a tempo <= 0
            (the message names ``sequence.filename``).
        ConfigError: ``steps_per_quarter`` is not a positive integer.

    Example:
        >>> import note_seq
        >>> s = note_seq.NoteSequence()
        >>> _ = s.tempos.add(qpm=120)
        >>> _ = s.notes.add(pitch=60, start_time=0.0, end_time=0.5, velocity=80)
        >>> quantize(s).notes[0].quantized_end_step
        4

    Notebook: 02_preprocessing.ipynb
    """
    from note_seq import sequences_lib

    from labkit.errors import MidiValueError

    name = _name(sequence)
    spq = _check_steps_per_quarter(steps_per_quarter, name)
    _check_times(sequence, name)
    try:
        return sequences_lib.quantize_note_sequence(sequence, spq)
    except (sequences_lib.MultipleTempoError, sequences_lib.MultipleTimeSignatureError,
            sequences_lib.BadTimeSignatureError):
        pass  # handled below, with the whole tempo map
    except sequences_lib.NegativeTimeError as error:  # pragma: no cover - _check_times catches it first
        raise MidiValueError(f"cannot quantize: {error}", name) from None
    except Exception as error:  # pragma: no cover - a failure inside note_seq we did not foresee
        raise MidiValueError(f"cannot quantize ({type(error).__name__}: {error})", name) from None
    return _quantize_with_tempo_map(sequence, spq, name)


def _check_times(sequence, name, start=None, end=None):
    """MidiValueError unless every note and event time is finite and not negative."""
    from labkit.errors import MidiValueError

    if start is None:
        start = np.array([n.start_time for n in sequence.notes], dtype=np.float64)
        end = np.array([n.end_time for n in sequence.notes], dtype=np.float64)
    bad = ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise MidiValueError(f"note of pitch {sequence.notes[i].pitch} at {start[i]:.3f}-{end[i]:.3f} s; "
                             "times must be finite and not negative", name)
    for event in list(sequence.control_changes) + list(sequence.text_annotations):
        if not event.time >= 0:
            raise MidiValueError(f"event at negative time {event.time:.3f} s", name)


def _quantize_with_tempo_map(sequence, spq, name):
    """Relative quantization through a tempo map (see :func:`quantize`)."""
    import copy

    times, qpms = _tempo_segments(sequence, name)
    qns = copy.deepcopy(sequence)
    qns.quantization_info.steps_per_quarter = spq
    # One tempo and one time signature, at time 0, as note_seq's relative quantization has.
    del qns.tempos[:]
    qns.tempos.add(time=0.0, qpm=float(qpms[0]))
    sigs = sorted(((ts.numerator, ts.denominator, ts.time) for ts in qns.time_signatures), key=lambda x: x[2])
    num, den = (sigs[0][0], sigs[0][1]) if sigs else (4, 4)
    if num <= 0 or den <= 0 or den & (den - 1):
        num, den = 4, 4
    del qns.time_signatures[:]
    qns.time_signatures.add(time=0.0, numerator=num, denominator=den)

    def steps(values):
        return _seconds_to_steps(values, times, qpms, spq).tolist()

    starts = steps([n.start_time for n in qns.notes])
    ends = steps([n.end_time for n in qns.notes])
    total = steps([qns.total_time])[0]
    for note, s, e in zip(qns.notes, starts, ends):
        note.quantized_start_step = s
        note.quantized_end_step = e if e > s else s + 1
        total = max(total, note.quantized_end_step)
    qns.total_quantized_steps = total
    events = list(qns.control_changes) + list(qns.text_annotations)
    for event, s in zip(events, steps([e.time for e in events])):
        event.quantized_step = s
    return qns


# --- notes as arrays ---------------------------------------------------------------------

def _note_table(sequence, steps_per_quarter, name):
    """The notes of a sequence as int arrays ``pitch, start, end, instrument, is_drum``, in steps.

    A relatively quantized sequence must have ``steps_per_quarter`` steps per
    quarter and its steps are used as they are; otherwise the seconds are
    quantized exactly as :func:`quantize` would, without copying the proto.
    """
    from labkit.errors import ConfigError

    notes = sequence.notes
    n = len(notes)
    quantized = _is_relative_quantized(sequence)
    if quantized:
        have = sequence.quantization_info.steps_per_quarter
        if have != steps_per_quarter:
            raise ConfigError(f"the sequence is quantized at {have} steps per quarter but "
                              f"steps_per_quarter={steps_per_quarter} was asked; pass the unquantized "
                              f"sequence or steps_per_quarter={have}", name)
        ints = np.array([(x.pitch, x.instrument, x.is_drum, x.quantized_start_step, x.quantized_end_step)
                         for x in notes], dtype=np.int64).reshape(n, 5)
        start, end = ints[:, 3], ints[:, 4]
    else:
        ints = np.array([(x.pitch, x.instrument, x.is_drum) for x in notes], dtype=np.int64).reshape(n, 3)
        seconds = np.array([(x.start_time, x.end_time) for x in notes], dtype=np.float64).reshape(n, 2)
        _check_times(sequence, name, seconds[:, 0], seconds[:, 1])
        times, qpms = _tempo_segments(sequence, name)
        start = _seconds_to_steps(seconds[:, 0], times, qpms, steps_per_quarter)
        end = _seconds_to_steps(seconds[:, 1], times, qpms, steps_per_quarter)
    pitch, instrument, drum = ints[:, 0], ints[:, 1], ints[:, 2].astype(bool)
    end = np.maximum(end, start + 1)
    return pitch, start, end, instrument, drum


def _skyline(pitch, start, end):
    """The top line of (possibly overlapping) notes: arrays ``pitch, start, end``, sorted and monophonic.

    The highest sounding pitch wins. A melody note is cut (ends for good) when a
    note of higher or the same pitch starts; a note that starts under a higher
    sounding one is hidden, and comes in when the melody note above it ends, if
    it still sounds then and is the highest one left. Of notes starting
    together, the highest wins.
    """
    import heapq

    if len(pitch) == 0:
        return pitch, start, end
    order = np.lexsort((-pitch, start))
    pitch, start, end = pitch[order], start[order], end[order]
    if len(pitch) == 1 or ((np.diff(start) > 0).all() and (start[1:] >= end[:-1]).all()):
        return pitch, start, end  # already monophonic: nothing to do
    out = []                      # [pitch, start, end] of melody notes
    cur = None                    # the sounding melody note: [pitch, end]
    hidden = []                   # heap of (-pitch, -end) of hidden, still sounding notes
    p_list, s_list, e_list = pitch.tolist(), start.tolist(), end.tolist()
    i, n = 0, len(p_list)
    while i < n or cur is not None:
        # the next time something happens: a note starts, or the melody note ends
        t = s_list[i] if i < n else None
        if cur is not None and (t is None or cur[1] <= t):
            t = cur[1]
        if cur is not None and cur[1] <= t:
            cur = None
        while hidden and -hidden[0][1] <= t:
            heapq.heappop(hidden)  # the top hidden note has ended (lower ones are dropped when they surface)
        j = i
        while j < n and s_list[j] == t:
            j += 1
        starting = list(range(i, j))  # pitch-descending
        i = j
        if cur is not None:
            if starting and p_list[starting[0]] >= cur[0]:
                out[-1][2] = t  # cut for good
                cur = None
            else:
                for k in starting:
                    heapq.heappush(hidden, (-p_list[k], -e_list[k]))
                continue
        # no melody note sounds: the highest of the starting notes and the hidden ones
        while hidden and -hidden[0][1] <= t:
            heapq.heappop(hidden)
        if starting and (not hidden or p_list[starting[0]] >= -hidden[0][0]):
            k = starting.pop(0)
            cur = [p_list[k], e_list[k]]
        elif hidden:
            neg_p, neg_e = heapq.heappop(hidden)
            cur = [-neg_p, -neg_e]
        for k in starting:
            heapq.heappush(hidden, (-p_list[k], -e_list[k]))
        if cur is not None:
            out.append([cur[0], t, cur[1]])
        elif i >= n:
            break
    arr = np.array(out, dtype=np.int64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _split_at_gaps(pitch, start, end, max_gap_steps):
    """Indices ``[(i0, i1), ...]`` of runs of notes with no rest longer than ``max_gap_steps``."""
    if len(pitch) == 0:
        return []
    breaks = np.flatnonzero(start[1:] - end[:-1] > max_gap_steps) + 1
    bounds = np.concatenate([[0], breaks, [len(pitch)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _sequence_fields(sequence):
    """qpm, (key, mode) or None, numerator, denominator from a sequence's first annotations."""
    qpm = float(_tempo_segments(sequence, _name(sequence))[1][0])
    keys = sorted(sequence.key_signatures, key=lambda k: k.time)
    key = (int(keys[0].key) % 12, _MODE_FROM_PROTO.get(int(keys[0].mode), "major")) if keys else None
    sigs = sorted(sequence.time_signatures, key=lambda t: t.time)
    num, den = (int(sigs[0].numerator), int(sigs[0].denominator)) if sigs else (4, 4)
    if num <= 0 or den <= 0:
        num, den = 4, 4
    return qpm, key, num, den


def _steps_per_bar(steps_per_quarter, numerator, denominator) -> float:
    return steps_per_quarter * 4.0 * numerator / denominator


def _make_melody(pitch, start, end, offset, spq, qpm, key, num, den, source):
    melody = Melody.from_notes(pitch, start - offset, end - offset, steps_per_quarter=spq, qpm=qpm,
                               numerator=num, denominator=den, source=source)
    if key is None:
        key = estimate_key(melody)
    return melody.replace(key=key[0], mode=key[1])


def extract_melodies(sequence, *, steps_per_quarter: int = 4, min_notes: int = 8,
                     max_gap_quarters: float = 4.0, strategy: str = "instrument",
                     min_pitch: int = 0, max_pitch: int = 127) -> list[Melody]:
    """Monophonic melodies of a (polyphonic, multi-track) ``NoteSequence``.

    Steps:

    1. Quantize (an unquantized sequence as :func:`quantize` would; a relatively
       quantized one must be at ``steps_per_quarter``). Drum notes are ignored,
       and so are notes outside ``[min_pitch, max_pitch]``.
    2. Candidate lines. ``strategy="instrument"``: one line per instrument
       (track), in instrument order; ``"skyline"``: one line from all pitched
       instruments together. A line is made monophonic by the *skyline*: the
       highest pitch wins. Of notes starting together the highest is kept; a
       melody note is cut, for good, when a note of higher or equal pitch
       starts (a re-strike); a note that starts under a sounding higher one is
       hidden and comes in when the melody note above it ends, if it still
       sounds then and is the highest left. (Magenta's extractor,
       ``note_seq.melodies_lib.Melody.from_quantized_sequence``, instead lets
       any later note cut the sounding one, even a lower accompaniment note.)
    3. Each line is split wherever a silence is longer than ``max_gap_quarters``
       quarter notes; runs of fewer than ``min_notes`` notes are dropped.
    4. Each melody starts at the bar line before its first note (bars of the
       first time signature, counted from time 0) and ends one step after its
       last note ends (a ``NOTE_OFF`` there), like :meth:`Melody.from_notes`.

    Fields: ``qpm`` is the tempo in force at time 0 (120 if none); ``key``/``mode`` come from
    the first key signature, or, when the sequence has none, from
    :func:`estimate_key` of each melody; ``numerator``/``denominator`` from the
    first time signature (4/4 if none); ``source`` is ``sequence.filename``
    (else ``sequence.id``).

    Args:
        sequence: a ``note_seq.NoteSequence``, unquantized or relatively quantized.
        steps_per_quarter: grid resolution (4 = sixteenth notes).
        min_notes: fewest notes a melody may have (>= 1).
        max_gap_quarters: longest silence, in quarter notes, kept inside a melody.
        strategy: ``"instrument"`` or ``"skyline"``.
        min_pitch, max_pitch: the pitch range (MIDI, inclusive) notes must lie in.

    Returns:
        A list of :class:`Melody`, ordered by instrument, then time.

    Raises:
        NoNotesError: the sequence has no pitched notes (none, or drums only).
        NoMelodyError: notes, but no melody of ``min_notes`` notes.
        ConfigError: a bad argument. MidiValueError: negative times, tempo <= 0.
        Every message names ``sequence.filename``.

    Example:
        >>> seq = melody_to_sequence(Melody.from_notes([60, 62, 64], [0, 2, 4], [2, 4, 8]))
        >>> extract_melodies(seq, min_notes=3)[0].events.tolist()
        [60, -2, 62, -2, 64, -2, -2, -2, -1]

    Notebook: 02_preprocessing.ipynb
    """
    from labkit.errors import ConfigError, NoMelodyError, NoNotesError

    name = _name(sequence)
    spq = _check_steps_per_quarter(steps_per_quarter, name)
    if strategy not in ("instrument", "skyline"):
        raise ConfigError(f"strategy must be 'instrument' or 'skyline', got {strategy!r}", name)
    if int(min_notes) < 1:
        raise ConfigError(f"min_notes must be at least 1, got {min_notes}", name)
    if not max_gap_quarters >= 0:
        raise ConfigError(f"max_gap_quarters must be >= 0, got {max_gap_quarters}", name)
    if not 0 <= min_pitch <= max_pitch <= MAX_MIDI_PITCH:
        raise ConfigError(f"pitch range [{min_pitch}, {max_pitch}] is not within 0..127", name)

    pitch, start, end, instrument, drum = _note_table(sequence, spq, name)
    if not (~drum).any():
        what = "only drum notes" if len(pitch) else "no notes"
        raise NoNotesError(f"{what}; a melody needs pitched notes", name)
    keep = ~drum & (pitch >= min_pitch) & (pitch <= max_pitch)
    qpm, key, num, den = _sequence_fields(sequence)
    bar = _steps_per_bar(spq, num, den)
    max_gap_steps = max_gap_quarters * spq
    source = name or ""

    if strategy == "instrument":
        groups = [keep & (instrument == i) for i in np.unique(instrument[keep])]
    else:
        groups = [keep]
    melodies, longest = [], 0
    for mask in groups:
        p, s, e = _skyline(pitch[mask], start[mask], end[mask])
        for i0, i1 in _split_at_gaps(p, s, e, max_gap_steps):
            longest = max(longest, i1 - i0)
            if i1 - i0 < min_notes:
                continue
            offset = int(np.floor(np.floor(s[i0] / bar) * bar))
            melodies.append(_make_melody(p[i0:i1], s[i0:i1], e[i0:i1], offset, spq, qpm, key, num, den, source))
    if not melodies:
        if not keep.any():
            raise NoMelodyError(f"no pitched notes within pitches {min_pitch}..{max_pitch}", name)
        raise NoMelodyError(f"no melody of at least {min_notes} notes (the longest has {longest}; "
                            f"lines split at rests longer than {max_gap_quarters} quarters)", name)
    return melodies


def tune_melody(sequence, steps_per_quarter: int = 4) -> Melody:
    """The whole melody of a corpus tune: its first pitched instrument, from time 0, unsplit.

    Corpus tunes are single-line melodies (a chorale's soprano is its first
    instrument), so this is the tune itself: the lowest-numbered instrument
    that has pitched notes, made monophonic by the skyline (see
    :func:`extract_melodies`), with no splitting at rests, no ``min_notes``,
    and step 0 at time 0 (a leading rest or pickup stays where it is). Fields
    are filled as in :func:`extract_melodies`.

    Args:
        sequence: a ``note_seq.NoteSequence``, unquantized or relatively quantized.
        steps_per_quarter: grid resolution.

    Returns:
        One :class:`Melody`.

    Raises:
        NoNotesError: no pitched notes (message names ``sequence.filename``).

    Example:
        >>> m = Melody.from_notes([67, 64], [0, 4], [4, 12])
        >>> tune_melody(melody_to_sequence(m)) == m
        True

    Notebook: 02_preprocessing.ipynb
    """
    from labkit.errors import NoNotesError

    name = _name(sequence)
    spq = _check_steps_per_quarter(steps_per_quarter, name)
    pitch, start, end, instrument, drum = _note_table(sequence, spq, name)
    if not (~drum).any():
        what = "only drum notes" if len(pitch) else "no notes"
        raise NoNotesError(f"{what}; a melody needs pitched notes", name)
    mask = ~drum & (instrument == instrument[~drum].min())
    p, s, e = _skyline(pitch[mask], start[mask], end[mask])
    qpm, key, num, den = _sequence_fields(sequence)
    return _make_melody(p, s, e, 0, spq, qpm, key, num, den, name or "")


def melody_to_sequence(melody: Melody, *, velocity: int = 90, program: int = 0):
    """A melody as an unquantized ``NoteSequence`` (times in seconds from ``melody.qpm``).

    One instrument (0), the given MIDI ``program`` and ``velocity``; a tempo, a
    time signature (``numerator/denominator``) and a key signature
    (``key``/``mode``) at time 0; ``total_time`` is the melody's whole length
    (a trailing rest included); ``id`` is ``melody.source``.
    ``extract_melodies(melody_to_sequence(m), steps_per_quarter=m.steps_per_quarter)``
    gives ``m`` back for a melody as :meth:`Melody.from_notes` builds it that
    starts in its first bar and has no rest longer than ``max_gap_quarters``.

    Example:
        >>> seq = melody_to_sequence(Melody.from_notes([60], [0], [4], qpm=60))
        >>> (seq.notes[0].pitch, seq.notes[0].end_time)
        (60, 1.0)

    Notebook: 02_preprocessing.ipynb
    """
    from note_seq.protobuf import music_pb2

    from labkit.errors import ConfigError

    if not 1 <= velocity <= 127 or not 0 <= program <= 127:
        raise ConfigError(f"velocity must be 1..127 and program 0..127, got {velocity} and {program}",
                          melody.source or None)
    seconds_per_step = 60.0 / (melody.qpm * melody.steps_per_quarter)
    seq = music_pb2.NoteSequence()
    seq.id = melody.source
    seq.ticks_per_quarter = 220
    seq.tempos.add(time=0.0, qpm=float(melody.qpm))
    seq.time_signatures.add(time=0.0, numerator=int(melody.numerator), denominator=int(melody.denominator))
    seq.key_signatures.add(time=0.0, key=int(melody.key) % 12,
                           mode=music_pb2.NoteSequence.KeySignature.MINOR if melody.mode == "minor"
                           else music_pb2.NoteSequence.KeySignature.MAJOR)
    for p, s, e in zip(*(a.tolist() for a in melody.notes())):
        seq.notes.add(pitch=p, velocity=velocity, program=program, instrument=0,
                      start_time=s * seconds_per_step, end_time=e * seconds_per_step)
    seq.total_time = melody.num_steps * seconds_per_step
    return seq


# --- pitch: transposition and keys ------------------------------------------------------

def transpose(melody: Melody, semitones: int) -> Melody:
    """The melody moved by ``semitones`` (positive = up); its ``key`` moves with it.

    Raises :class:`EncodingError` (naming ``melody.source``) when a pitch would
    leave 0..127.

    >>> transpose(Melody.from_notes([60, 64], [0, 1], [1, 2]), 2).pitches.tolist()
    [62, 66]

    Notebook: 02_preprocessing.ipynb
    """
    semitones = int(semitones)
    events = melody.events.copy()
    pitched = events >= 0
    if pitched.any():
        lo, hi = int(events[pitched].min()) + semitones, int(events[pitched].max()) + semitones
        if lo < MIN_MIDI_PITCH or hi > MAX_MIDI_PITCH:
            raise EncodingError(f"transposing by {semitones} semitones gives pitches {lo}..{hi}, "
                                "outside 0..127", melody.source or None)
    events[pitched] += semitones
    return melody.replace(events=events, key=(melody.key + semitones) % 12)


def pitch_class_durations(melody: Melody) -> np.ndarray:
    """Total duration in steps of each pitch class 0..11 (float ``[12]``; rests not counted).

    Notebook: 02_preprocessing.ipynb
    """
    pitches, starts, ends = melody.notes()
    return np.bincount(pitches % 12, weights=(ends - starts).astype(np.float64), minlength=12)


def key_correlations(melody: Melody) -> np.ndarray:
    """Pearson correlations ``[2, 12]`` of the melody's pitch-class durations with
    the 24 Krumhansl–Kessler key profiles: row 0 major, row 1 minor, column = tonic.

    All zeros when the durations carry no information (no notes, or all twelve
    pitch classes equally long).

    Notebook: 02_preprocessing.ipynb
    """
    hist = pitch_class_durations(melody)
    h = hist - hist.mean()
    norm = np.sqrt(h @ h)
    if norm == 0:
        return np.zeros((2, 12))
    return (_KEY_PROFILES @ h / norm).reshape(2, 12)


def _key_profile_matrix() -> np.ndarray:
    # row 12 * mode + tonic: the profile rotated so that p[pc] is the weight of pc in that key,
    # centred and scaled to unit length (so a dot product with a centred, unit vector is Pearson's r)
    rows = [np.roll(profile, tonic) for profile in (KRUMHANSL_MAJOR, KRUMHANSL_MINOR) for tonic in range(12)]
    p = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


_KEY_PROFILES = _key_profile_matrix()


def estimate_key(melody: Melody) -> tuple[int, str]:
    """The key of a melody by the Krumhansl–Schmuckler algorithm: ``(tonic 0..11, "major"|"minor")``.

    The duration of every pitch class (in steps) is correlated with the 24
    rotations of Krumhansl & Kessler's major and minor profiles; the best
    correlation wins (ties: major before minor, lower tonic first). A melody
    without notes, or one that gives no information, is called C major.
    Reference: C. L. Krumhansl, *Cognitive Foundations of Musical Pitch*
    (Oxford University Press, 1990), chapter 4.

    >>> estimate_key(Melody.from_notes([60, 62, 64, 65, 67, 65, 64, 62, 60],
    ...                                range(0, 18, 2), range(2, 20, 2)))
    (0, 'major')

    Notebook: 02_preprocessing.ipynb
    """
    corr = key_correlations(melody)
    best = int(np.argmax(corr.reshape(-1)))
    return best % 12, ("major", "minor")[best // 12]


def key_shift(tonic: int, mode: str) -> int:
    """Semitones (in -6..+5) that take a key to C major (``mode="major"``) or A minor.

    >>> key_shift(7, "major"), key_shift(4, "minor")
    (5, 5)

    Notebook: 02_preprocessing.ipynb
    """
    target = 9 if mode == "minor" else 0
    return (target - int(tonic) + 6) % 12 - 6


def normalize_key(melody: Melody, *, use_signature: bool = True) -> Melody:
    """The melody transposed to C major or A minor, by the smallest shift (-6..+5 semitones).

    The key is the melody's ``key``/``mode`` fields when ``use_signature`` is
    True (:func:`extract_melodies` fills them from the file's key signature, or
    from :func:`estimate_key` when the file has none), else :func:`estimate_key`.
    If the smallest shift leaves 0..127, the shift one octave the other way is
    used; :class:`EncodingError` if neither fits. The result has ``key`` 0 or 9.

    >>> m = Melody.from_notes([67, 71, 74], [0, 1, 2], [1, 2, 3], key=7)
    >>> normalize_key(m).pitches.tolist()
    [72, 76, 79]

    Notebook: 02_preprocessing.ipynb
    """
    tonic, mode = (melody.key, melody.mode) if use_signature else estimate_key(melody)
    shift = key_shift(tonic, mode)
    try:
        moved = transpose(melody, shift)
    except EncodingError:
        moved = transpose(melody, shift + 12 if shift < 0 else shift - 12)
    return moved.replace(mode=mode)


#: :func:`normalize_note_values` re-reads a melody whose median note is at least this many quarters...
LONG_NOTATION_QUARTERS = 1.5
#: ... so that its median note comes as close as a power of two allows to this many quarters (an eighth).
COMMON_NOTE_QUARTERS = 0.5


def normalize_note_values(melody: Melody) -> Melody:
    """The melody re-read in short note values when it is notated in long ones.

    Old sources and their editions often write a tune in half and whole notes
    (4/2, 3/1: most of Essen's ``altdeu`` songs) that a modern edition writes
    in quarters and eighths. The notation changes every duration measured in
    quarters without changing the music. When the median note is at least
    :data:`LONG_NOTATION_QUARTERS` long, this divides every note value by the
    power of two ``2**k`` that brings the median nearest to
    :data:`COMMON_NOTE_QUARTERS` (the median note of most tunes of the corpus):
    ``steps_per_quarter`` and the time signature's denominator are multiplied
    by ``2**k`` and ``qpm`` divided by it, so the steps, the bars and the sound
    are unchanged. Other melodies are returned as they are. (Only long notations
    are re-read: a chorale in quarters and a reel in eighths keep their values.)

    >>> halves = Melody.from_notes([67, 69, 71], [0, 8, 16], [8, 16, 24], numerator=3, denominator=2)
    >>> m = normalize_note_values(halves)
    >>> m.steps_per_quarter, f"{m.numerator}/{m.denominator}", (m.num_steps, halves.num_steps)
    (16, '3/8', (25, 25))

    Notebook: 06_style_features.ipynb
    """
    _, start, end = melody.notes()
    if not len(start):
        return melody
    median = float(np.median(end - start)) / max(int(melody.steps_per_quarter), 1)
    if median < LONG_NOTATION_QUARTERS:
        return melody
    k = max(int(np.rint(np.log2(median / COMMON_NOTE_QUARTERS))), 0)
    return melody.replace(steps_per_quarter=melody.steps_per_quarter << k, denominator=melody.denominator << k,
                          qpm=melody.qpm / 2 ** k)


# --- phrases --------------------------------------------------------------------------

def split_phrases(melody: Melody, *, max_rest_quarters: float = 0.5, long_note_quarters: float | None = None,
                  min_phrase_bars: float = 2.0, max_phrase_bars: float | None = 4.0,
                  steps_per_bar: float | None = None, bar_offset_steps: int = 0) -> list[Melody]:
    """Cut a melody into phrases ("paragraphs" for the style features).

    A simple rule, meant for notated melodies without phrase marks. The gap
    after note *i* (up to the next onset) is a *candidate* boundary when

    1. the rest after the note is longer than ``max_rest_quarters`` quarters, or
    2. the note is long and sits at a bar line: its inter-onset interval (the
       note and any rest after it) is at least ``long_note_quarters`` quarters,
       and it starts or ends on a bar line (a cadence on the downbeat before
       the next phrase's pickup, or a long note closing the bar).

    Walking from left to right, a candidate becomes a boundary once the phrase
    so far spans at least ``min_phrase_bars`` bars (from its first step); a
    phrase that reaches ``max_phrase_bars`` bars with no boundary is cut at the
    next note that starts on a bar line (``None``: never). Folk and chorale
    phrases are mostly 2 to 4 bars, hence the defaults. On 2,230 tunes of the
    shipped corpus the median phrase (first and last left out) was 2.5 bars
    long (Essen), 2.75 (Bach's chorales), 3.7 (Aird's), 4 (O'Neill's, Ryan's).

    ``long_note_quarters`` defaults to twice the median inter-onset interval,
    at least one quarter. Bars are ``steps_per_bar`` steps (default: from
    ``numerator/denominator``), counted from ``bar_offset_steps`` (corpus MIDI
    files pad a pickup with silence, so bars start at step 0).

    The phrases partition the melody: each runs from its first note-on (the
    first phrase from step 0) to the next phrase's first note-on, so
    ``np.concatenate([p.events for p in phrases])`` equals ``melody.events``.
    Fields are copied; ``source`` gets ``"#<k>"`` appended (k from 1). A melody
    with no notes has no phrases (``[]``).

    Returns:
        A list of :class:`Melody`.

    >>> m = Melody.from_notes([60, 62, 64, 65, 67, 65], [0, 4, 8, 16, 20, 24], [4, 8, 16, 20, 24, 32])
    >>> [p.pitches.tolist() for p in split_phrases(m, min_phrase_bars=1)]
    [[60, 62, 64], [65, 67, 65]]

    Notebook: 02_preprocessing.ipynb
    """
    from labkit.errors import ConfigError

    spq = melody.steps_per_quarter
    bar = float(steps_per_bar) if steps_per_bar is not None else _steps_per_bar(spq, melody.numerator,
                                                                                melody.denominator)
    if not bar > 0 or not max_rest_quarters >= 0 or not min_phrase_bars >= 0 \
            or (max_phrase_bars is not None and not max_phrase_bars > 0):
        raise ConfigError(f"split_phrases needs steps_per_bar > 0, max_rest_quarters >= 0, "
                          f"min_phrase_bars >= 0, max_phrase_bars > 0; got {bar}, {max_rest_quarters}, "
                          f"{min_phrase_bars}, {max_phrase_bars}", melody.source or None)
    pitches, starts, ends = melody.notes()
    if len(pitches) == 0:
        return []
    next_onsets = np.concatenate([starts[1:], [melody.num_steps]])
    ioi = next_onsets - starts
    if long_note_quarters is None:
        long_steps = max(float(spq), 2.0 * float(np.median(ioi[:-1] if len(ioi) > 1 else ioi)))
    else:
        long_steps = long_note_quarters * spq

    def on_bar(steps):
        phase = np.mod(np.asarray(steps, dtype=np.float64) - bar_offset_steps, bar)
        return np.isclose(phase, 0) | np.isclose(phase, bar)

    rest = next_onsets - ends
    candidate = (rest > max_rest_quarters * spq) | ((ioi >= long_steps) & (on_bar(starts) | on_bar(next_onsets)))
    next_on_bar = on_bar(next_onsets)
    min_steps = min_phrase_bars * bar - 1e-9
    max_steps = np.inf if max_phrase_bars is None else max_phrase_bars * bar - 1e-9
    cuts, phrase_start = [0], 0
    for i in range(len(pitches) - 1):
        t = int(next_onsets[i])
        length = t - phrase_start
        if (candidate[i] and length >= min_steps) or (length >= max_steps and next_on_bar[i]):
            cuts.append(t)
            phrase_start = t
    cuts.append(melody.num_steps)
    return [melody.replace(events=melody.events[a:b].copy(), source=f"{melody.source}#{k + 1}")
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
