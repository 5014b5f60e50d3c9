"""Small helpers every stage shares: atomic writes, MIDI file names and finding them, pitch-class names.

Kept in one place so that every writer replaces its files the same way (a reader never sees
half a file, and every output gets the same mode) and every command agrees on what a MIDI
file is called.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

#: File suffixes read as MIDI (compared lower-cased). ``.kar`` is karaoke MIDI: a standard MIDI file.
MIDI_SUFFIXES: tuple[str, ...] = (".mid", ".midi", ".kar")

#: Pitch-class names with sharps, the spelling of piano-roll axes: ``PITCH_CLASS_NAMES[61 % 12] == "C#"``.
PITCH_CLASS_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: Names of the twelve key tonics, spelled as key signatures usually are (``Eb`` major, not ``D#``).
KEY_TONIC_NAMES: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch, sharps for black keys: 60 -> ``'C4'``, 69 -> ``'A4'``.

    >>> pitch_name(60), pitch_name(61), pitch_name(21)
    ('C4', 'C#4', 'A0')

    Notebook: 01_midi_and_notesequences.ipynb
    """
    pitch = int(pitch)
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


def is_midi_name(path: str | os.PathLike) -> bool:
    """Whether a file name ends in one of :data:`MIDI_SUFFIXES` (any case).

    >>> is_midi_name("song.MID"), is_midi_name("karaoke.kar"), is_midi_name("notes.txt")
    (True, True, False)
    """
    return Path(path).suffix.lower() in MIDI_SUFFIXES


def find_midi_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[str, str | None]]:
    """Expand files and folders into ``(path, problem)`` entries, in the order given.

    A folder contributes every MIDI file below it (recursively, sorted; see :data:`MIDI_SUFFIXES`);
    a folder with none gives one entry with a problem, and so does a path that does not exist.
    A file named directly is taken whatever its name (reading it tells whether it is MIDI).
    ``problem`` is None for a file to read, else a short sentence for the batch's report line.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "b.mid").write_bytes(b""); _ = (d / "a.KAR").write_bytes(b""); _ = (d / "x.txt").write_bytes(b"")
    >>> [(pathlib.Path(p).name, problem) for p, problem in find_midi_files(d)]
    [('a.KAR', None), ('b.mid', None)]
    >>> find_midi_files([d / "missing.mid"])[0][1]
    'no such file or folder'

    Notebook: 07_style_index.ipynb
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[tuple[str, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_midi_name(p))
            if not files:
                found.append((os.fspath(raw), f"folder holds no {'/'.join(MIDI_SUFFIXES)} files"))
            found.extend((str(p), None) for p in files)
        elif path.exists():
            found.append((os.fspath(raw), None))
        else:
            found.append((os.fspath(raw), "no such file or folder"))
    return found


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """0o666 less the process umask: the mode ``open()`` gives a new file (``mkstemp`` gives 0o600)."""
    return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write a file so that readers see the old file or the whole new one, never a part.

    ``data`` is the bytes to write, or a function that writes to the open binary file
    (``lambda f: np.savez(f, **arrays)``). The bytes go to a hidden temporary file in the same
    folder, are flushed to disk, get the usual file mode (:func:`file_mode`) and replace
    ``path`` in one ``os.replace``; on any error the temporary file is removed and ``path``
    is untouched. Parent folders are created.

    >>> import tempfile, pathlib
    >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a" / "x.txt", b"hello")
    >>> p.read_bytes(), oct(p.stat().st_mode & 0o777) == oct(file_mode())
    (b'hello', True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_dir(directory: str | os.PathLike, fill: Callable[[Path], object]) -> Path:
    """Replace a whole folder as one unit: ``fill(tmp)`` writes the new files into a fresh sibling folder.

    The new folder then takes the old one's place (the old one is moved aside and removed), so a
    reader finds either every old file or every new one, never a mix; if ``fill`` fails, the
    old folder is untouched and the half-written one removed. Used for models made of several
    files (the style model's ``model.json`` and ``arrays.npz``).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> _ = atomic_write_dir(d, lambda t: (t / "a.txt").write_text("1"))
    >>> _ = atomic_write_dir(d, lambda t: (t / "b.txt").write_text("2"))
    >>> sorted(p.name for p in d.iterdir())
    ['b.txt']
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private
        fill(tmp)
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, file_mode())
        if directory.exists():
            old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
            os.replace(directory, old)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return directory
