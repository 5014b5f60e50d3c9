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
