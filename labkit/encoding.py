"""Melody <-> event tokens, and piano-roll frames for polyphony.

:class:`MelodyEncoding` is Magenta's ``MelodyOneHotEncoding`` over a stated
pitch range ``[min_pitch, max_pitch]`` (both inclusive):

=========================  ===============================
token                      meaning
=========================  ===============================
``0``                      no event: hold the current note or rest
``1``                      note-off: silence starts
``2 + pitch - min_pitch``  note-on of ``pitch``
=========================  ===============================

so ``vocab_size = max_pitch - min_pitch + 3``. The default range is the
piano's, MIDI 21 (A0) to 108 (C8): 88 pitches, 90 tokens.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labkit.errors import EncodingError
from labkit.melody import NO_EVENT, NOTE_OFF, Melody

NO_EVENT_TOKEN = 0
NOTE_OFF_TOKEN = 1
NUM_SPECIAL_TOKENS = 2
PIANO_MIN_PITCH = 21
PIANO_MAX_PITCH = 108


@dataclass(frozen=True)
class MelodyEncoding:
    """Melody events <-> integer tokens over ``[min_pitch, max_pitch]``.

    >>> enc = MelodyEncoding()
    >>> enc.vocab_size
    90
    >>> enc.encode(Melody.from_notes([60], [0], [2])).tolist()
    [41, 0, 1]
    """

    min_pitch: int = PIANO_MIN_PITCH
    max_pitch: int = PIANO_MAX_PITCH

    def __post_init__(self):
        if not (0 <= self.min_pitch <= self.max_pitch <= 127):
            raise EncodingError(f"pitch range [{self.min_pitch}, {self.max_pitch}] is not within 0..127")

    @property
    def vocab_size(self) -> int:
        return self.max_pitch - self.min_pitch + 1 + NUM_SPECIAL_TOKENS

    @property
    def num_pitches(self) -> int:
        return self.max_pitch - self.min_pitch + 1

    def pitch_to_token(self, pitch):
        return np.asarray(pitch) - self.min_pitch + NUM_SPECIAL_TOKENS

    def token_to_pitch(self, token):
        return np.asarray(token) + self.min_pitch - NUM_SPECIAL_TOKENS

    def encode(self, melody: Melody | np.ndarray) -> np.ndarray:
        """Tokens (int32 ``[num_steps]``) of a melody or of a raw event array.

        Raises :class:`EncodingError` naming the melody's source when a pitch
        lies outside the range.
        """
        events = melody.events if isinstance(melody, Melody) else np.asarray(melody, dtype=np.int32)
        source = melody.source if isinstance(melody, Melody) else None
        pitched = events >= 0
        if pitched.any():
            lo, hi = int(events[pitched].min()), int(events[pitched].max())
            if lo < self.min_pitch or hi > self.max_pitch:
                raise EncodingError(
                    f"melody spans pitches {lo}..{hi}, outside the encoding's range "
                    f"{self.min_pitch}..{self.max_pitch}", source or None)
        tokens = np.where(events == NO_EVENT, NO_EVENT_TOKEN,
                          np.where(events == NOTE_OFF, NOTE_OFF_TOKEN, self.pitch_to_token(events)))
        return tokens.astype(np.int32)

    def decode(self, tokens, **melody_kwargs) -> Melody:
        """The melody of a token sequence; ``melody_kwargs`` go to :class:`Melody`."""
        tokens = np.asarray(tokens, dtype=np.int32).reshape(-1)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise EncodingError(f"token outside 0..{self.vocab_size - 1}")
        events = np.where(tokens == NO_EVENT_TOKEN, NO_EVENT,
                          np.where(tokens == NOTE_OFF_TOKEN, NOTE_OFF, self.token_to_pitch(tokens)))
        return Melody(events.astype(np.int32), **melody_kwargs)


# =====================================================================================
# Piano-roll frames: polyphony as a boolean matrix [frames, pitches].
# =====================================================================================

def _roll_notes(source, steps_per_quarter, include_drums):
    """``(pitch, start, end, num_frames, name)`` of a melody or a NoteSequence, in steps."""
    from labkit.melody import _check_steps_per_quarter, _name, _note_table, melody_to_sequence

    if isinstance(source, Melody):
        if source.steps_per_quarter != steps_per_quarter:
            return _roll_notes(melody_to_sequence(source), steps_per_quarter, include_drums)
        pitch, start, end = (a.astype(np.int64) for a in source.notes())
        return pitch, start, end, source.num_steps, source.source or None
    name = _name(source)
    spq = _check_steps_per_quarter(steps_per_quarter, name)
    pitch, start, end, _, drum = _note_table(source, spq, name)
    if source.quantization_info.steps_per_quarter > 0:
        total = int(source.total_quantized_steps)
    else:
        from labkit.melody import _seconds_to_steps, _tempo_segments

        times, qpms = _tempo_segments(source, name)
        total = int(_seconds_to_steps([source.total_time], times, qpms, spq)[0])
    keep = np.ones(len(pitch), dtype=bool) if include_drums else ~drum
    pitch, start, end = pitch[keep], start[keep], end[keep]
    frames = max(total, int(end.max()) if len(end) else 0)
    return pitch, start, end, frames, name


def piano_roll(sequence_or_melody, *, steps_per_quarter: int = 4, min_pitch: int = PIANO_MIN_PITCH,
               max_pitch: int = PIANO_MAX_PITCH, include_drums: bool = False, onsets: bool = False):
    """Piano-roll frames of a ``NoteSequence`` or a :class:`Melody`.

    ``roll[t, p - min_pitch]`` is True while pitch ``p`` sounds during frame
    (step) ``t``: from the note's start step up to, not including, its end
    step. A frame is one step of ``steps_per_quarter`` per quarter note;
    an unquantized sequence is quantized as :func:`labkit.melody.quantize` does,
    a melody on another grid is re-quantized through seconds.
    The number of frames is the sequence's length in steps
    (``total_time`` or ``total_quantized_steps``; a melody's ``num_steps``),
    at least up to the end of the last note.

    Repeated notes: in the roll alone, a note that starts on the very step
    where the same pitch ends merges with it into one long note. Ask for
    ``onsets=True`` to get a second bool array of the same shape, True on the
    frame each note starts; :func:`piano_roll_to_sequence` uses it to keep
    repeated notes apart.

    Notes outside ``[min_pitch, max_pitch]`` are left out, and so are drum
    notes unless ``include_drums``.

    Returns:
        ``roll``: bool ``[frames, max_pitch - min_pitch + 1]``, or
        ``(roll, onset_roll)`` when ``onsets`` is True.

    Example:
        >>> from labkit.melody import Melody
        >>> r = piano_roll(Melody.from_notes([60, 60], [0, 2], [2, 3]), min_pitch=60, max_pitch=61)
        >>> r.astype(int).T.tolist()
        [[1, 1, 1, 0], [0, 0, 0, 0]]

    Notebook: 02_preprocessing.ipynb
    """
    if not (0 <= min_pitch <= max_pitch <= 127):
        raise EncodingError(f"pitch range [{min_pitch}, {max_pitch}] is not within 0..127")
    pitch, start, end, frames, _ = _roll_notes(sequence_or_melody, steps_per_quarter, include_drums)
    inside = (pitch >= min_pitch) & (pitch <= max_pitch)
    pitch, start, end = pitch[inside] - min_pitch, start[inside], end[inside]
    width = max_pitch - min_pitch + 1
    # +1 / -1 at each note's start / end, summed over time: > 0 while sounding
    count = np.zeros((frames + 1, width), dtype=np.int32)
    np.add.at(count, (start, pitch), 1)
    np.add.at(count, (end, pitch), -1)
    roll = np.cumsum(count, axis=0)[:frames] > 0
    if not onsets:
        return roll
    onset_roll = np.zeros((frames, width), dtype=bool)
    onset_roll[start, pitch] = True
    return roll, onset_roll


def piano_roll_to_sequence(roll, *, steps_per_quarter: int = 4, qpm: float = 120.0,
                           min_pitch: int = PIANO_MIN_PITCH, onsets=None, velocity: int = 90,
                           program: int = 0):
    """The notes of a piano roll as an unquantized ``NoteSequence`` (times in seconds).

    A note of pitch ``min_pitch + j`` starts at frame ``t`` when ``roll[t, j]``
    is on and either the frame before is off or ``onsets[t, j]`` is True; it
    ends at the first frame that is off or starts another note. Onsets on
    frames where the roll is off are ignored. A frame lasts
    ``60 / (qpm * steps_per_quarter)`` seconds; ``total_time`` covers every frame.
    Inverse of :func:`piano_roll` with ``onsets=True``:
    ``piano_roll(piano_roll_to_sequence(r, onsets=o), onsets=True)`` gives
    ``(r, o)`` back when ``o`` marks every note start.

    Args:
        roll: bool-like ``[frames, num_pitches]``.
        onsets: optional bool-like array of the same shape.

    Example:
        >>> import numpy as np
        >>> s = piano_roll_to_sequence(np.array([[1], [1], [0]]), min_pitch=60)
        >>> [(n.pitch, n.start_time, n.end_time) for n in s.notes]
        [(60, 0.0, 0.25)]

    Notebook: 02_preprocessing.ipynb
    """
    from note_seq.protobuf import music_pb2

    roll = np.asarray(roll)
    if roll.ndim != 2:
        raise EncodingError(f"a piano roll is [frames, pitches]; got shape {roll.shape}")
    roll = roll.astype(bool)
    frames, width = roll.shape
    if not (0 <= min_pitch and min_pitch + width - 1 <= 127):
        raise EncodingError(f"pitches {min_pitch}..{min_pitch + width - 1} are not within 0..127")
    if not (qpm > 0 and steps_per_quarter > 0):
        raise EncodingError(f"qpm and steps_per_quarter must be positive, got {qpm} and {steps_per_quarter}")
    if onsets is None:
        onsets = np.zeros_like(roll)
    else:
        onsets = np.asarray(onsets).astype(bool)
        if onsets.shape != roll.shape:
            raise EncodingError(f"onsets have shape {onsets.shape}, the roll {roll.shape}")
    before = np.vstack([np.zeros((1, width), dtype=bool), roll[:-1]])
    starts = roll & (~before | onsets)
    seconds_per_step = 60.0 / (qpm * steps_per_quarter)
    seq = music_pb2.NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(time=0.0, qpm=float(qpm))
    # a note ends where the roll goes off or where the next note of its pitch starts
    stops = ~roll | starts
    notes = []
    for j in range(width):
        on = np.flatnonzero(starts[:, j])
        if not len(on):
            continue
        stop = np.append(np.flatnonzero(stops[:, j]), frames)
        ends = stop[np.searchsorted(stop, on, side="right")]
        notes.extend((int(s), int(e), min_pitch + j) for s, e in zip(on, ends))
    for s, e, p in sorted(notes):
        seq.notes.add(pitch=p, velocity=velocity, program=program, instrument=0,
                      start_time=s * seconds_per_step, end_time=e * seconds_per_step)
    seq.total_time = frames * seconds_per_step
    return seq
