"""One exception family for the whole course.

Every error that labkit raises on purpose is a :class:`LabkitError`. Its
message names the file (when there is one) and the problem in one line, so a
student sees ``song.mid: not a MIDI file (it starts with b'RIFF')`` instead of
a traceback from deep inside a dependency.

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import os


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose.

    ``path`` (optional) is the file the problem is about; ``str(error)``
    is ``"<path>: <problem>"``, or just the problem when there is no file.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class MidiReadError(LabkitError):
    """A file could not be read as MIDI: empty, truncated, not MIDI, corrupt."""


class MidiValueError(LabkitError):
    """A MIDI file was read but holds values no music can have (absurd tempo, pitch, length)."""


class NoNotesError(LabkitError):
    """A readable MIDI file holds no pitched notes (empty, or drums only)."""


class NoMelodyError(LabkitError):
    """Notes were found, but no monophonic melody long enough to use."""


class EncodingError(LabkitError):
    """A melody or token sequence does not fit an encoding (pitch out of range, bad token)."""


class CorpusError(LabkitError):
    """The shipped corpus or a user's dataset is missing, incomplete or inconsistent."""


class ConfigError(LabkitError):
    """A parameter or configuration value is invalid (temperature <= 0, length 0, ...)."""


class CheckpointError(LabkitError):
    """A checkpoint is missing, incomplete or does not match the model."""
