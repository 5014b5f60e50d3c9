"""MIDI files <-> ``note_seq.NoteSequence``, with clear errors for bad files.

A standard MIDI file is a header chunk (``MThd``: format 0 or 1, the number
of track chunks, and the *division*: ticks per quarter note) followed by track
chunks (``MTrk``), each a list of events at integer *ticks*. How long a tick
lasts depends on the *tempo map*: tempo events (microseconds per quarter
note) that can change anywhere in the piece. A ``NoteSequence`` stores times
in seconds, so reading a file means turning ticks into seconds under that map.

Two readers build the same ``NoteSequence``:

* ``reader="symusic"`` (the default, ``"auto"``): the C++ parser symusic reads
  the notes in ticks, and :func:`read_midi_bytes` converts them to seconds with
  the tempo map itself. Several times faster than note_seq per file; most of
  its time is Python building one protobuf message per note, not parsing
  (figures: ``benchmarks/README.md``, "MIDI reading").
* ``reader="note_seq"``: ``note_seq.midi_to_note_sequence`` (pretty_midi and
  mido underneath), the reference of the Magenta ecosystem.

The two agree note for note on well-formed files (``tests/test_midi_io.py``
checks every fixture). Where a file is ambiguous they can differ:

1. Tempo, time- and key-signature events outside the first track: the
   symusic reader honours them; note_seq (pretty_midi) reads them from the
   first track only, so the timing of such a file comes out wrong there.
2. A key struck again while it still sounds (two note-ons of one pitch on one
   channel before a note-off): a note-off ends *every* sounding note of that
   pitch, as on a synthesizer, in both readers. symusic pairs note-offs first
   in, first out; this module re-pairs them, but a note-on that symusic left
   unpaired at the end of such a run is lost in the symusic reader (12 of the
   942 notes of ``tests/fixtures/midi/miditoolkit_1390.mid``).
3. A program change between a note's on and off: the note keeps the program
   of its note-on (symusic); note_seq gives it the program of its note-off.

Both readers keep the notes, the instruments (one per track, channel and
program), the tempo map, time and key signatures. Only the note_seq reader
keeps control changes and pitch bends; the course needs the notes.

Bad input never surfaces as a traceback from a parser: every problem is a
:class:`~labkit.errors.MidiReadError` (the file cannot be read as MIDI) or a
:class:`~labkit.errors.MidiValueError` (it reads, but holds values no music
has), with a one-line message that names the file.

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

with warnings.catch_warnings():
    # note_seq imports pydub, which warns when ffmpeg is missing; reading MIDI needs no ffmpeg.
    warnings.simplefilter("ignore", RuntimeWarning)
    import note_seq
    from note_seq import music_pb2

from labkit._common import atomic_write
from labkit.errors import ConfigError, MidiReadError, MidiValueError, NoNotesError

#: The readers :func:`read_midi` knows; ``"auto"`` is symusic.
READERS = ("auto", "symusic", "note_seq")

#: Fastest tempo accepted, in quarter notes per minute. Real music stays far
#: below (a very fast piece is about 300 qpm); faster values come from broken
#: files or from tempo events used as tricks. (The slowest tempo a MIDI file
#: can express is 3.58 qpm, so no lower limit is needed.)
MAX_QPM = 1000.0
#: Longest note accepted, in seconds: a note held for over an hour is a
#: note-off lost in a broken file, not music.
MAX_NOTE_SECONDS = 3600.0
#: Longest piece accepted, in seconds (three hours; Wagner's longest act lasts
#: about two).
MAX_DURATION_SECONDS = 3 * 3600.0

#: The tempo of a MIDI file before its first tempo event: 500,000 microseconds per quarter note, 120 qpm.
_DEFAULT_MICROSECONDS_PER_QUARTER = 500_000

#: What a file that is not MIDI usually starts with, for a helpful message.
_OTHER_FORMATS = {
    b"RIFF": "a RIFF file (WAV audio?)",
    b"ID3": "an MP3 audio file",
    b"\xff\xfb": "an MP3 audio file",
    b"fLaC": "a FLAC audio file",
    b"OggS": "an Ogg audio file",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (MusicXML .mxl?)",
    b"<?xml": "an XML file (MusicXML?)",
    b"X:": "an ABC text file",
}


class MidiHeader(NamedTuple):
    """What the header chunk ``MThd`` of a MIDI file says.

    ``format``: 0 (one track) or 1 (several tracks played together);
    ``num_tracks``: the number of track chunks; ``ticks_per_quarter``: the
    time resolution (ticks in one quarter note).
    """

    format: int
    num_tracks: int
    ticks_per_quarter: int


# --- reading --------------------------------------------------------------------------

def read_midi(path: str | os.PathLike, *, reader: str = "auto") -> music_pb2.NoteSequence:
    """Read a standard MIDI file (format 0 or 1) into a ``NoteSequence``.

    Times are in seconds, following the file's tempo map. The sequence keeps
    every note (``pitch``, ``velocity``, ``start_time``, ``end_time``,
    ``instrument``, ``program``, ``is_drum``: channel 10 is the drum kit), the
    track names (``instrument_infos``), ``tempos``, ``time_signatures``,
    ``key_signatures`` (``key`` 0..11 is the tonic's pitch class, 0 = C),
    ``ticks_per_quarter``, ``total_time`` (end of the last note) and
    ``filename`` (``str(path)``). See the module text for how the two
    readers differ on ambiguous files.

    Args:
        path: the ``.mid`` file.
        reader: ``"auto"`` or ``"symusic"`` (fast), or ``"note_seq"`` (the reference).

    Returns:
        The ``note_seq.NoteSequence`` (unquantized). A file with no notes gives
        a sequence with no notes; :func:`require_notes` turns that into an error.

    Raises:
        MidiReadError: missing file, a directory, an empty, truncated, corrupt
            or non-MIDI file, SMPTE timing, format 2.
        MidiValueError: a tempo of 0 or above :data:`MAX_QPM`, a note longer
            than :data:`MAX_NOTE_SECONDS`, a piece longer than
            :data:`MAX_DURATION_SECONDS`, an impossible time or key signature.
        ConfigError: an unknown ``reader``.

    Example:
        >>> seq = read_midi("tests/fixtures/midi/music21_test01.mid")  # doctest: +SKIP
        >>> len(seq.notes), seq.tempos[0].qpm                            # doctest: +SKIP
        (18, 120.0)

    Notebook: 01_midi_and_notesequences.ipynb
    """
    _check_reader(reader)
    name = os.fspath(path)
    return read_midi_bytes(_read_file(name), name, reader=reader)


def read_midi_bytes(data: bytes, name: str = "<bytes>", *, reader: str = "auto") -> music_pb2.NoteSequence:
    """Read the bytes of a MIDI file into a ``NoteSequence``, like :func:`read_midi`.

    ``name`` stands for the file in error messages and in ``sequence.filename``.

    >>> seq = read_midi_bytes(midi_to_bytes(note_seq.NoteSequence()))
    >>> len(seq.notes), seq.tempos[0].qpm
    (0, 120.0)

    Notebook: 01_midi_and_notesequences.ipynb
    """
    _check_reader(reader)
    data = bytes(data)
    header = _check_header(data, name)
    if reader == "note_seq":
        sequence = _read_with_note_seq(data, name)
    else:
        sequence = _read_with_symusic(data, header, name)
    sequence.filename = name
    return sequence


def read_header(path: str | os.PathLike) -> MidiHeader:
    """The header chunk of a MIDI file: format, number of tracks, ticks per quarter note.

    Checks the whole chunk structure (as :func:`read_midi` does before parsing)
    and raises :class:`MidiReadError` for a file that is not sound MIDI.

    >>> read_header("tests/fixtures/midi/music21_test01.mid")  # doctest: +SKIP
    MidiHeader(format=1, num_tracks=2, ticks_per_quarter=960)

    Notebook: 01_midi_and_notesequences.ipynb
    """
    name = os.fspath(path)
    return _check_header(_read_file(name), name)


def _check_reader(reader: str) -> None:
    if reader not in READERS:
        raise ConfigError(f"unknown MIDI reader {reader!r}; choose one of {', '.join(READERS)}")


def _read_file(name: str) -> bytes:
    """The bytes of a file, or a MidiReadError that says why not."""
    path = Path(name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MidiReadError("no such file", name) from None
    except IsADirectoryError:
        raise MidiReadError("is a directory, not a MIDI file", name) from None
    except PermissionError:
        raise MidiReadError("permission denied", name) from None
    except OSError as exc:
        raise MidiReadError(f"cannot read the file ({exc.strerror or exc})", name) from None


def _check_header(data: bytes, name: str) -> MidiHeader:
    """Check the chunk structure of a MIDI file before any parser sees it.

    A MIDI file is a sequence of chunks, each a 4-byte type and a 4-byte
    big-endian length. The first is ``MThd`` with three 16-bit numbers:
    format, number of tracks, division; then come the ``MTrk`` track chunks
    (chunks of other types may appear and are skipped by every reader).
    """
    if not data:
        raise MidiReadError("empty file (0 bytes)", name)
    if not data.startswith(b"MThd"):
        raise MidiReadError(f"not a MIDI file: {_what_it_is(data)}", name)
    if len(data) < 14:
        raise MidiReadError(f"truncated MIDI header ({len(data)} bytes, a header needs 14)", name)
    header_length, fmt, num_tracks, division = struct.unpack(">IHHH", data[4:14])
    if header_length < 6:
        raise MidiReadError(f"corrupt MIDI header (it claims {header_length} bytes, at least 6 are needed)", name)
    if fmt == 2:
        raise MidiReadError("MIDI format 2 (independent sequences) is not supported; use format 0 or 1", name)
    if fmt > 2:
        raise MidiReadError(f"corrupt MIDI header (format {fmt}; only 0, 1 and 2 exist)", name)
    if division & 0x8000:
        raise MidiReadError("uses SMPTE time division (frames per second), which is not supported; "
                            "re-export it with ticks per quarter note", name)
    if division == 0:
        raise MidiReadError("corrupt MIDI header (0 ticks per quarter note)", name)
    if num_tracks == 0:
        raise MidiReadError("the MIDI header declares no tracks", name)

    offset, tracks_found = 8 + header_length, 0
    while offset < len(data) and tracks_found < num_tracks:
        if offset + 8 > len(data):
            raise MidiReadError(f"truncated: the file ends inside a chunk header at byte {offset}", name)
        kind, length = data[offset:offset + 4], struct.unpack(">I", data[offset + 4:offset + 8])[0]
        if kind == b"MTrk":
            tracks_found += 1
        elif not all(32 <= b < 127 for b in kind):  # chunk types are 4 printable ASCII letters
            raise MidiReadError(f"corrupt chunk at byte {offset} (type {kind!r}, expected b'MTrk')", name)
        if offset + 8 + length > len(data):
            missing = offset + 8 + length - len(data)
            chunk = f"track {tracks_found}" if kind == b"MTrk" else f"the chunk at byte {offset}"
            raise MidiReadError(f"truncated: {chunk} lacks its last {missing} bytes "
                                f"(the chunk claims {length} bytes)", name)
        offset += 8 + length
    if tracks_found < num_tracks:
        raise MidiReadError(f"truncated: the header declares {num_tracks} tracks, the file holds {tracks_found}",
                            name)
    return MidiHeader(fmt, num_tracks, division)


def _what_it_is(data: bytes) -> str:
    """A short guess at what a non-MIDI file is, for the error message."""
    for magic, description in _OTHER_FORMATS.items():
        if data.startswith(magic):
            return f"it looks like {description}"
    head = data[:16]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with {head!r}, not b'MThd'"
    if all(c.isprintable() or c.isspace() for c in text):
        return f"it looks like text ({' '.join(text.split())[:12]!r}...)"
    return f"it starts with {head!r}, not b'MThd'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# --- the symusic reader ---------------------------------------------------------------

def _read_with_symusic(data: bytes, header: MidiHeader, name: str) -> music_pb2.NoteSequence:
    """Parse with symusic (notes in ticks), then build the NoteSequence in seconds."""
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError, ValueError, ... for corrupt data
        raise MidiReadError(f"corrupt MIDI data ({_first_line(exc)})", name) from None

    tpq = header.ticks_per_quarter
    tempo_ticks, tempo_mspq = _tempo_map(score.tempos.numpy(), name)
    seconds = _tick_clock(tempo_ticks, tempo_mspq, tpq)

    sequence = music_pb2.NoteSequence()
    sequence.ticks_per_quarter = tpq
    sequence.source_info.encoding_type = music_pb2.NoteSequence.SourceInfo.MIDI

    for time, mspq in zip(seconds(tempo_ticks).tolist(), tempo_mspq.tolist()):
        sequence.tempos.add(time=time, qpm=60e6 / mspq)
    for tick, numerator, denominator in _rows(score.time_signatures.numpy(), "time", "numerator", "denominator"):
        sequence.time_signatures.add(time=float(seconds(tick)), numerator=numerator, denominator=denominator)
    for tick, sharps, minor in _rows(score.key_signatures.numpy(), "time", "key", "tonality"):
        if not (-7 <= sharps <= 7 and minor in (0, 1)):
            raise MidiValueError(f"impossible key signature ({sharps} sharps, tonality {minor}) "
                                 f"at {float(seconds(tick)):.2f} s", name)
        # A key with `sharps` sharps (negative: flats) has its major tonic `sharps` fifths above C.
        tonic = (7 * sharps + (9 if minor else 0)) % 12
        mode = music_pb2.NoteSequence.KeySignature.MINOR if minor else music_pb2.NoteSequence.KeySignature.MAJOR
        sequence.key_signatures.add(time=float(seconds(tick)), key=tonic, mode=mode)

    add_note = sequence.notes.add  # add() and then setting fields is the fastest way to fill protobuf
    all_starts, all_ends = [np.zeros(0)], [np.zeros(0)]
    for instrument, track in enumerate(score.tracks):
        if track.name:
            sequence.instrument_infos.add(name=track.name, instrument=instrument)
        columns = track.notes.numpy()
        start = columns["time"].astype(np.int64)
        pitch = columns["pitch"].astype(np.int64)
        start, end, pitch, velocity = _end_at_next_note_off(
            start, start + columns["duration"], pitch, columns["velocity"].astype(np.int64))
        program, is_drum = int(track.program), bool(track.is_drum)
        start, end = seconds(start), seconds(end)
        for s, e, p, v in zip(start.tolist(), end.tolist(), pitch.tolist(), velocity.tolist()):
            note = add_note()
            note.instrument, note.program, note.is_drum = instrument, program, is_drum
            note.pitch, note.velocity, note.start_time, note.end_time = p, v, s, e
        all_starts.append(start)
        all_ends.append(end)
    start, end = np.concatenate(all_starts), np.concatenate(all_ends)
    sequence.total_time = end.max(initial=0.0)
    _check_values(sequence, name, start, end)
    return sequence


def _rows(columns: dict, *names: str):
    """Rows of symusic's column arrays, as Python ints."""
    return zip(*(columns[n].astype(np.int64).tolist() for n in names))


def _tempo_map(columns: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The tempo map as ``(ticks, microseconds_per_quarter)``, sorted, starting at tick 0.

    Before the first tempo event the tempo is 120 qpm; of several events at one
    tick the last one counts; an event that repeats the tempo in force is dropped
    (as note_seq does), so each entry is a real change.
    """
    ticks = columns["time"].astype(np.int64)
    mspq = columns["mspq"].astype(np.int64)
    if (mspq <= 0).any():
        raise MidiValueError("tempo of 0 microseconds per quarter note (an infinitely fast tempo)", name)
    order = np.argsort(ticks, kind="stable")
    ticks = np.concatenate(([0], ticks[order]))
    mspq = np.concatenate(([_DEFAULT_MICROSECONDS_PER_QUARTER], mspq[order]))
    last_at_its_tick = np.append(ticks[1:] != ticks[:-1], True)
    ticks, mspq = ticks[last_at_its_tick], mspq[last_at_its_tick]
    a_change = np.insert(mspq[1:] != mspq[:-1], 0, True)
    return ticks[a_change], mspq[a_change]


def _tick_clock(tempo_ticks: np.ndarray, tempo_mspq: np.ndarray, ticks_per_quarter: int):
    """A function that turns ticks (an int or an int array) into seconds under a tempo map.

    The tempo is constant between two tempo events, so the time of a tick is
    the time its tempo segment starts plus the ticks since then times the
    seconds per tick of that segment.

    >>> seconds = _tick_clock(np.array([0, 960]), np.array([500000, 1000000]), 480)  # 120, then 60 qpm
    >>> seconds(np.array([0, 480, 960, 1440]))
    array([0. , 0.5, 1. , 2. ])
    """
    seconds_per_tick = tempo_mspq / 1e6 / ticks_per_quarter
    segment_start = np.concatenate(([0.0], np.cumsum(np.diff(tempo_ticks) * seconds_per_tick[:-1])))

    def seconds(ticks):
        ticks = np.asarray(ticks, dtype=np.int64)
        segment = np.searchsorted(tempo_ticks, ticks, side="right") - 1
        return segment_start[segment] + (ticks - tempo_ticks[segment]) * seconds_per_tick[segment]

    return seconds


def _end_at_next_note_off(start, end, pitch, velocity):
    """Re-pair symusic's notes so that a note-off ends every sounding note of its pitch.

    symusic pairs the note-offs of one pitch with its note-ons first in,
    first out. When a key is struck again while it sounds, that shifts every
    later end of that pitch. A synthesizer (and note_seq) ends *all* sounding
    notes of a pitch at its next note-off, so each note ends at the first
    note-off of its pitch strictly after its start. Notes of zero length
    (note-on and note-off at one tick) sound nothing and are dropped, as in
    note_seq. All arrays are int64 ``[num_notes]`` of one instrument.

    Key 60 struck at tick 0, struck again at 240, one note-off at 480; key 62 with no length:

    >>> _end_at_next_note_off(np.array([0, 240, 480]), np.array([480, 720, 480]),
    ...                       np.array([60, 60, 62]), np.array([80, 81, 82]))
    (array([  0, 240]), array([480, 480]), array([60, 60]), array([80, 81]))
    """
    keep = end > start
    start, end, pitch, velocity = start[keep], end[keep], pitch[keep], velocity[keep]
    # Sort the note-offs by (pitch, tick) in one key, then search each note's start among them.
    stride = np.int64(1) << 40  # larger than any tick
    offs = np.sort(pitch * stride + end)
    first_after = np.searchsorted(offs, pitch * stride + start, side="right")
    found = first_after < len(offs)
    found[found] = offs[first_after[found]] // stride == pitch[found]  # a note-off of the same pitch
    new_end = offs[first_after[found]] - pitch[found] * stride
    return start[found], new_end, pitch[found], velocity[found]


# --- the note_seq reader --------------------------------------------------------------

def _read_with_note_seq(data: bytes, name: str) -> music_pb2.NoteSequence:
    """Parse with ``note_seq.midi_to_note_sequence`` (pretty_midi and mido)."""
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about tempo events outside the first track (it ignores them).
            warnings.simplefilter("ignore")
            sequence = note_seq.midi_to_note_sequence(data)
    except Exception as exc:  # note_seq wraps most errors; pretty_midi/mido raise others
        # note_seq's message is "Midi decoding error <class 'OSError'>: ..."; keep "OSError: ...".
        problem = _first_line(exc).removeprefix("Midi decoding error ")
        problem = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", problem)
        raise MidiReadError(f"corrupt MIDI data ({problem.rstrip(': ')})", name) from None
    _check_values(sequence, name)
    return sequence


# --- checks shared by both readers ----------------------------------------------------

def _check_values(sequence: music_pb2.NoteSequence, name: str,
                  start: np.ndarray | None = None, end: np.ndarray | None = None) -> None:
    """Raise MidiValueError for values no music has (see the limits at the top of the module).

    ``start``, ``end``: the notes' times in seconds, in the order of
    ``sequence.notes``, when the caller has them already (reading them back
    from the protobuf message is slow).
    """
    for tempo in sequence.tempos:
        if not 0 < tempo.qpm <= MAX_QPM:
            raise MidiValueError(f"tempo of {tempo.qpm:.6g} qpm at {tempo.time:.2f} s "
                                 f"(the limit is {MAX_QPM:.0f} qpm)", name)
    for ts in sequence.time_signatures:
        if ts.numerator < 1 or ts.denominator < 1 or ts.denominator & (ts.denominator - 1):
            raise MidiValueError(f"impossible time signature {ts.numerator}/{ts.denominator} "
                                 f"at {ts.time:.2f} s", name)
    if not sequence.notes:
        return
    if start is None or end is None:
        start = np.fromiter((n.start_time for n in sequence.notes), np.float64, len(sequence.notes))
        end = np.fromiter((n.end_time for n in sequence.notes), np.float64, len(sequence.notes))
    longest = int(np.argmax(end - start))
    if end[longest] - start[longest] > MAX_NOTE_SECONDS:
        note = sequence.notes[longest]
        raise MidiValueError(f"a note (pitch {note.pitch} at {note.start_time:.1f} s) lasts "
                             f"{_hours(note.end_time - note.start_time)} (the limit is "
                             f"{_hours(MAX_NOTE_SECONDS)}); its note-off is probably lost", name)
    if end.max() > MAX_DURATION_SECONDS:
        raise MidiValueError(f"the music lasts {_hours(end.max())} (the limit is {_hours(MAX_DURATION_SECONDS)})",
                             name)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds:.0f} s"


def require_notes(sequence: music_pb2.NoteSequence, path: str | os.PathLike | None = None
                  ) -> music_pb2.NoteSequence:
    """Return ``sequence`` if it has pitched (non-drum) notes, else raise :class:`NoNotesError`.

    For callers that need music to work on: a melody cannot come from an
    empty file or from drums alone. ``path`` (default: ``sequence.filename``)
    names the file in the message: ``"song.mid: holds no notes"`` or
    ``"song.mid: holds only drums (120 drum notes)"``.

    >>> require_notes(note_seq.NoteSequence(filename="empty.mid"))
    Traceback (most recent call last):
    ...
    labkit.errors.NoNotesError: empty.mid: holds no notes

    Notebook: 01_midi_and_notesequences.ipynb
    """
    name = os.fspath(path) if path is not None else (sequence.filename or None)
    if not sequence.notes:
        raise NoNotesError("holds no notes", name)
    if all(note.is_drum for note in sequence.notes):
        raise NoNotesError(f"holds only drums ({len(sequence.notes)} drum notes)", name)
    return sequence


# --- writing --------------------------------------------------------------------------

def midi_to_bytes(sequence: music_pb2.NoteSequence) -> bytes:
    """The bytes of a standard MIDI file (format 1) holding ``sequence``.

    Written by note_seq (pretty_midi) at the sequence's ``ticks_per_quarter``
    (220 when it is 0), with its tempos, time and key signatures, one track
    per instrument; times are rounded to the nearest tick.

    Raises:
        MidiValueError: the sequence holds values MIDI cannot store (pitch or
            velocity outside 0..127, a negative time, ...).

    >>> midi_to_bytes(note_seq.NoteSequence())[:4]
    b'MThd'

    Notebook: 01_midi_and_notesequences.ipynb
    """
    name = sequence.filename or None
    buffer = io.BytesIO()
    try:
        note_seq.sequence_proto_to_pretty_midi(sequence).write(buffer)
    except Exception as exc:  # pretty_midi/mido raise ValueError, TypeError, ... for bad values
        raise MidiValueError(f"cannot write as MIDI ({_first_line(exc)})", name) from None
    return buffer.getvalue()


def write_midi(sequence: music_pb2.NoteSequence, path: str | os.PathLike) -> Path:
    """Write ``sequence`` as a standard MIDI file at ``path``, atomically; returns the path.

    The file is written under a temporary name in the same folder and then
    renamed, so a reader never sees half a file, even if writing fails.
    Missing folders are created. Raises :class:`MidiValueError` like
    :func:`midi_to_bytes`.

    >>> write_midi(note_seq.NoteSequence(), "out/empty.mid")  # doctest: +SKIP
    PosixPath('out/empty.mid')

    Notebook: 01_midi_and_notesequences.ipynb
    """
    return atomic_write(path, midi_to_bytes(sequence))


# --- describing -----------------------------------------------------------------------

def describe(sequence: music_pb2.NoteSequence) -> dict:
    """A summary of a sequence, as plain data (printable, JSON-ready).

    Keys: ``file``; ``duration_seconds``; ``num_notes``, ``num_drum_notes``;
    ``ticks_per_quarter``; ``instruments``: one dict per instrument with
    ``instrument``, ``name``, ``program``, ``program_name`` (General MIDI;
    ``"Drums"`` for the drum kit), ``is_drum``, ``num_notes``,
    ``lowest_pitch``, ``highest_pitch``; ``tempos``: ``[{time, qpm}]``;
    ``time_signatures``: ``[{time, numerator, denominator}]``;
    ``key_signatures``: ``[{time, key, mode}]`` with the key as a name (``"Eb"``).

    >>> d = describe(note_seq.NoteSequence(total_time=2.0))
    >>> d["duration_seconds"], d["num_notes"], d["instruments"]
    (2.0, 0, [])

    Notebook: 01_midi_and_notesequences.ipynb
    """
    import pretty_midi

    names = {info.instrument: info.name for info in sequence.instrument_infos}
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for note in sequence.notes:
        groups.setdefault((note.instrument, note.program, note.is_drum), []).append(note.pitch)
    instruments = []
    for (instrument, program, is_drum), pitches in sorted(groups.items()):
        instruments.append({
            "instrument": instrument,
            "name": names.get(instrument, "").strip(),
            "program": program,
            "program_name": "Drums" if is_drum else pretty_midi.program_to_instrument_name(program),
            "is_drum": is_drum,
            "num_notes": len(pitches),
            "lowest_pitch": min(pitches),
            "highest_pitch": max(pitches),
        })
    key_names = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    minor = music_pb2.NoteSequence.KeySignature.MINOR
    return {
        "file": sequence.filename,
        "duration_seconds": float(sequence.total_time),
        "num_notes": len(sequence.notes),
        "num_drum_notes": sum(1 for note in sequence.notes if note.is_drum),
        "ticks_per_quarter": int(sequence.ticks_per_quarter),
        "instruments": instruments,
        "tempos": [{"time": t.time, "qpm": t.qpm} for t in sequence.tempos],
        "time_signatures": [{"time": t.time, "numerator": t.numerator, "denominator": t.denominator}
                            for t in sequence.time_signatures],
        "key_signatures": [{"time": k.time, "key": key_names[k.key % 12],
                            "mode": "minor" if k.mode == minor else "major"} for k in sequence.key_signatures],
    }
