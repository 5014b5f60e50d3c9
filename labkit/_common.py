"""Small helpers every stage shares: atomic writes, MIDI file names and finding them, pitch-class names.

Kept in one place so that every writer replaces its files the same way (a reader never sees
half a file, and every output gets the same mode) and every command agrees on what a MIDI
file is called.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from labkit.errors import ConfigError

#: The largest seed: ``jax.random.key`` keeps a seed's lower 32 bits, so 2**32 would give seed 0's results
#: (and -1 those of 2**32 - 1). Seeds are refused outside ``0..MAX_SEED`` rather than silently aliased.
MAX_SEED = 2 ** 32 - 1

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


def display_name(path: str | os.PathLike | bytes) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 shown as U+FFFD.

    A file name on Linux is any bytes; Python gives an undecodable byte as a lone surrogate
    (``os.fsdecode(b"bad\\xff.mid") == 'bad\\udcff.mid'``), which a UTF-8 stdout, a CSV file
    or a protobuf string refuses with ``UnicodeEncodeError``. Every batch line names a file
    through this function, so one odd name never stops the others' results.

    >>> display_name(os.fsdecode(b"bad\\xff.mid")), display_name("ok.mid")
    ('bad\\ufffd.mid', 'ok.mid')

    Notebook: 02_preprocessing.ipynb
    """
    raw = path if isinstance(path, bytes) else os.fspath(path)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    try:
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:   # a surrogate that no decoding made: not from a file name
        return raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _link_problem(path: str) -> str | None:
    """Why a symbolic link leads nowhere (dangling or looping), or None when it leads somewhere."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link that loops (it never reaches a file)"
        if exc.errno == errno.ENOENT:
            try:
                target = display_name(os.readlink(path))
            except OSError:  # pragma: no cover - removed meanwhile
                target = "?"
            return f"broken symbolic link (its target {target} does not exist)"
        return f"cannot follow this symbolic link ({exc.strerror or exc})"
    return None


def find_midi_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[str, str | None]]:
    """Expand files and folders into ``(path, problem)`` entries, in the order given: one per entry, never silent.

    A folder contributes, recursively and sorted by name, every entry whose name ends in one of
    :data:`MIDI_SUFFIXES` and every symbolic link that leads nowhere: a regular file (or a link
    to one) as ``(path, None)``, to be read; anything else with a problem -- a dangling or looping
    link, a FIFO or device named like a MIDI file (reading it could block), a sub-folder that
    cannot be listed, a sub-folder named like a MIDI file (``x.mid/``) that holds none, a link to
    a folder already searched (so a link loop is never followed round). A named folder with
    nothing to report gives one entry with a problem, and so does a path that does not exist.
    A file named directly is taken whatever its name (reading it tells whether it is MIDI).
    ``problem`` is None for a file to read, else a short sentence for the batch's report line;
    paths keep undecodable bytes (print them with :func:`display_name`).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "b.mid").write_bytes(b""); _ = (d / "a.KAR").write_bytes(b""); _ = (d / "x.txt").write_bytes(b"")
    >>> (d / "c.mid").mkdir(); (d / "z.mid").symlink_to(d / "gone.mid")
    >>> [(pathlib.Path(p).name, problem) for p, problem in find_midi_files(d)]  # doctest: +ELLIPSIS
    [('a.KAR', None), ('b.mid', None), ('c.mid', 'a folder named like a MIDI file, holding none'), ('z.mid', 'broken symbolic link (its target .../gone.mid does not exist)')]
    >>> find_midi_files([d / "missing.mid"])[0][1]
    'no such file or folder'

    Notebook: 07_style_index.ipynb
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[tuple[str, str | None]] = []
    for raw in paths:
        name = os.fspath(raw)
        if os.path.isdir(name):
            seen = {_dir_key(name)}
            before = len(found)
            _search(name, found, seen)
            if len(found) == before:
                found.append((name, f"folder holds no {'/'.join(MIDI_SUFFIXES)} files"))
        elif os.path.isfile(name):
            found.append((name, None))
        elif os.path.lexists(name):
            found.append((name, _link_problem(name) if os.path.islink(name) else _not_regular(name)))
        else:
            found.append((name, "no such file or folder"))
    return found


def _dir_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _not_regular(path: str) -> str:
    return "not a regular file (a FIFO, socket or device): not read"


def _search(folder: str, found: list, seen: set) -> None:
    """Append the entries of ``folder`` (see :func:`find_midi_files`); ``seen``: folders searched already."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        found.append((folder, f"cannot list this folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        path = entry.path
        midi_named = is_midi_name(entry.name)
        link = entry.is_symlink()
        problem = _link_problem(path) if link else None
        if problem:
            found.append((path, problem))
        elif os.path.isdir(path):
            key = _dir_key(path)
            if key in seen:
                found.append((path, "link to a folder searched already (a loop): not followed"))
                continue
            seen.add(key)
            before = len(found)
            _search(path, found, seen)
            if midi_named and len(found) == before:
                found.append((path, "a folder named like a MIDI file, holding none"))
        elif midi_named:
            found.append((path, None if os.path.isfile(path) else _not_regular(path)))


def check_output_folder(folder: str | os.PathLike, files: Iterable[str] = (), *,
                        reads: Iterable[str | os.PathLike] = (), what: str = "output folder") -> Path:
    """Check, before any work and without writing, that ``folder`` can take a command's outputs.

    Raises :class:`~labkit.errors.ConfigError` (one line naming the path) when ``folder`` exists
    and is not a folder, when a file stands where a parent folder must be, when the folder (or
    the nearest existing folder above it) cannot be written (``/proc``, read-only, no permission:
    tried with a probe file that is removed at once), when something other than a file (a folder)
    sits where one of ``files`` must be written, or when one of ``reads`` (inputs of the command)
    lies inside ``folder`` (a command never writes over what it reads). Returns ``folder`` as a Path.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "melody_001.mid").mkdir()
    >>> check_output_folder(d, ["melody_001.mid"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    labkit.errors.ConfigError: .../melody_001.mid: is a folder, where this command must write a file
    >>> check_output_folder(d / "new" / "deeper") == d / "new" / "deeper"
    True

    Notebook: 05_sampling_studio.ipynb
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"exists and is not a folder (the {what} goes here)", folder)
    existing = folder
    while not existing.is_dir():
        if os.path.lexists(existing) and not existing.is_dir():
            raise ConfigError(f"is not a folder, so the {what} {display_name(folder)} cannot be made", existing)
        if existing.parent == existing:
            break
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".labkit-probe-")
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} here ({exc.strerror or exc})", folder) from None
    os.close(fd)
    os.remove(probe)
    if folder.is_dir():
        for name in files:
            target = folder / name
            if target.is_dir() or (os.path.lexists(target) and target.exists() and not target.is_file()):
                raise ConfigError("is a folder, where this command must write a file"
                                  if target.is_dir() else "is not a regular file, where this command must write one",
                                  target)
    where = Path(os.path.realpath(folder))
    for source in reads:
        inside = Path(os.path.realpath(source))
        if inside == where or where in inside.parents:
            raise ConfigError(f"lies inside the {what} {display_name(folder)}: the command would write over "
                              f"what it reads; choose an {what} outside it", source)
    return folder


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
    # ".<name>.<pid>.<random>.tmp": the writer's process id lets remove_stale_temporaries tell a dead writer's file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


#: A temporary file left by a writer that died is removed when it is this old, if its writer cannot be told.
STALE_TEMPORARY_SECONDS = 3600


def _writer_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs (None: cannot be told here; on Windows ``os.kill`` would end it)."""
    if os.name != "posix":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, someone else's
        return True
    except OSError:
        return None
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writers of ``path`` killed mid-write left behind; returns them.

    Only files named as :func:`atomic_write` names them, ``.<name>.<pid>.<random>.tmp`` (or
    ``.<name>.<random>.tmp``, without a process id) beside ``path``, are candidates. One is removed
    when its process id names no running process (or is this process's own: none of its writes is
    in flight when this is called), or, where that cannot be told, when it is older than
    :data:`STALE_TEMPORARY_SECONDS`. A live writer's file is never touched.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".c.npz.999999999.abc.tmp").write_bytes(b"half"); _ = (d / ".c.npz.keep").write_bytes(b"")
    >>> [p.name for p in remove_stale_temporaries(d / "c.npz")], sorted(p.name for p in d.iterdir())
    (['.c.npz.999999999.abc.tmp'], ['.c.npz.keep'])

    Notebook: 04_lstm_melody_model.ipynb
    """
    import re
    import time

    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or entry.is_symlink() or not entry.is_file():
            continue
        pid = int(match.group(1)) if match.group(1) else None
        alive = None if pid is None else (False if pid == os.getpid() else _writer_alive(pid))
        if alive is None:
            try:
                alive = time.time() - entry.stat().st_mtime < STALE_TEMPORARY_SECONDS
            except OSError:
                continue
        if not alive:
            try:
                entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    return removed


def read_npz(path: str | os.PathLike) -> dict:
    """Every array of an ``.npz`` file (as ``np.savez`` writes them), read without unpickling anything.

    Each member's ``.npy`` header is read and checked before its data: an array of Python
    objects is refused (never unpickled), and so is a header that promises more bytes than the
    member holds (a truncated or crafted file costs no more memory than its size). Raises
    ``ValueError`` with a one-line problem (callers add the file's name and what it should be).

    >>> import tempfile, pathlib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, w=np.arange(3.0), s=np.array(["x"], dtype=object).astype(str))
    >>> {k: v.tolist() for k, v in read_npz(p).items()}
    {'w': [0.0, 1.0, 2.0], 's': ['x']}
    >>> np.savez(p, o=np.array([{}], dtype=object), allow_pickle=True)
    >>> read_npz(p)
    Traceback (most recent call last):
    ...
    ValueError: array 'o' holds Python objects, which labkit never loads: not a file labkit wrote
    """
    import math
    import struct
    import zipfile
    import zlib

    import numpy as np

    fmt = np.lib.format
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"it holds {info.filename[:60]!r}, which is no array: not a file labkit wrote")
                name = info.filename[:-4]
                with archive.open(info) as member:
                    try:
                        version = fmt.read_magic(member)
                        if version not in ((1, 0), (2, 0)):
                            raise ValueError(f".npy version {version} is not one numpy's savez writes")
                        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                        shape, fortran, dtype = read_header(member)
                    except ValueError as error:
                        raise ValueError(f"array {name!r} has a corrupt header ({error})") from None
                    if dtype.hasobject:
                        raise ValueError(f"array {name!r} holds Python objects, which labkit never loads: "
                                         "not a file labkit wrote")
                    if any(d < 0 for d in shape) or dtype.itemsize == 0:
                        raise ValueError(f"array {name!r} has a corrupt header")
                    size = math.prod(shape) * dtype.itemsize
                    if size > info.file_size:
                        raise ValueError(f"array {name!r} is truncated (its header promises {size} bytes, "
                                         f"the file holds {info.file_size})")
                    data = member.read(size)
                    if len(data) != size:
                        raise ValueError(f"array {name!r} is truncated ({len(data)} of {size} bytes)")
                array = np.frombuffer(bytearray(data), dtype=dtype)
                arrays[name] = array.reshape(shape, order="F" if fortran else "C")
    except ValueError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as error:
        raise ValueError(f"not a complete .npz archive ({error})") from None
    except (OSError, NotImplementedError, RuntimeError) as error:
        raise ValueError(f"cannot be read ({error})") from None
    return arrays


class ConfigDict:
    """``to_dict`` / ``from_dict`` for the package's frozen config dataclasses (model sizes, training settings).

    ``from_dict`` refuses anything but a dict, and names the fields the class does not have, so a
    config read back from a checkpoint's JSON either rebuilds exactly or says what is wrong.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Sizes(ConfigDict):
    ...     hidden: int = 8
    >>> Sizes.from_dict(Sizes(hidden=4).to_dict())
    Sizes(hidden=4)
    >>> Sizes.from_dict({"hiden": 4})
    Traceback (most recent call last):
    ...
    labkit.errors.ConfigError: Sizes has no field(s) hiden
    """

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (tuples become lists, as JSON reads them back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict):
        """Inverse of :meth:`to_dict`; a key the class does not know raises :class:`ConfigError`."""
        if not isinstance(values, dict):
            raise ConfigError(f"a {cls.__name__} is read from a dict, got {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return cls(**values)
