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

from dataclasses import dataclass, field, replace

import numpy as np

from labkit.errors import EncodingError

NOTE_OFF = -1
NO_EVENT = -2
MIN_MIDI_PITCH = 0
MAX_MIDI_PITCH = 127


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
    qpm: float = 120.0
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
        ends = np.empty_like(onsets)
        boundaries = np.flatnonzero(ev != NO_EVENT)  # every step where something changes
        for i, start in enumerate(onsets):
            j = np.searchsorted(boundaries, start, side="right")
            ends[i] = boundaries[j] if j < len(boundaries) else len(ev)
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
