"""MIDI files <-> ``note_seq.NoteSequence``.

(Being written: the fast reader and the checks on bad input come next.)

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import note_seq


def write_midi(sequence: note_seq.NoteSequence, path: str | os.PathLike) -> Path:
    """Write ``sequence`` as a standard MIDI file at ``path``, atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".mid.tmp")
    os.close(fd)
    try:
        note_seq.sequence_proto_to_midi_file(sequence, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
