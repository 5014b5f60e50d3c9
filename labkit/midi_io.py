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

Both read the same bytes: a scan in Python first walks every event of every
track (:func:`_scan`), refuses what is corrupt or past the caps below, and
hands the parser a canonical copy of the file: sysex events and F7 escapes
(which symusic misreads and mido can fail on), system messages, events after
the end-of-track event and chunks that are not tracks are left out, and the
MIDI file inside a RIFF MIDI file (RMID) is unwrapped. So the two agree note
for note on well-formed files (``tests/test_midi_io.py`` checks every fixture
and crafted files; ``tests/test_midi_hostile.py`` random ones). Where a file
is ambiguous they can differ:

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
4. Instrument numbers in a track that holds several channels (or programs),
   as every format 0 file with more than one part does: symusic numbers them
   by channel and program, note_seq in the order of their first note-off. The
   notes, and which notes share an instrument, are the same.

Both readers keep the notes, the instruments (one per track, channel and
program), the tempo map, time and key signatures. Only the note_seq reader
keeps control changes and pitch bends; the course needs the notes.

Bad input never surfaces as a traceback from a parser: every problem is a
:class:`~labkit.errors.MidiReadError` (the file cannot be read as MIDI) or a
:class:`~labkit.errors.MidiValueError` (it reads, but holds values no music
has), with a one-line message that names the file (as
:func:`labkit._common.display_name` prints it, whatever bytes the name holds).

Bounded work: reading costs time and memory in proportion to the file's size
and these caps, for any input, hostile or not. The scan refuses, before
either parser runs, a file of more than :data:`MAX_FILE_BYTES` bytes, more
than :data:`MAX_EVENTS` events, an event later than :data:`MAX_TICKS`, or a
last event later than :data:`MAX_DURATION_SECONDS` under the tempo map (a
163-byte file can otherwise claim billions of ticks, which note_seq would
allocate and symusic's 32-bit ticks would wrap). After parsing, a tempo above
:data:`MAX_QPM` or a note longer than :data:`MAX_NOTE_SECONDS` is refused too.

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

from labkit._common import atomic_write, display_name
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
#: about two). Checked on the file's last event before any parser runs, and
#: again on the notes read.
MAX_DURATION_SECONDS = 3 * 3600.0
#: Latest tick accepted for any event (2**24, about 16.8 million: 4.8 hours at
#: 480 ticks per quarter note and 120 qpm, 2.4 hours at 960). note_seq
#: (pretty_midi) fills a table of one float per tick up to the last event, so
#: this bounds that table to 128 MiB (about 400 MB and 2 s in all); it
#: also keeps every tick far below symusic's 32-bit limit (2**31), where its
#: ticks wrap around.
MAX_TICKS = 2**24
#: Most events (notes on and off, controls, meta and sysex events, in all
#: tracks together) accepted in one file: the longest fixture, ten minutes of
#: orchestra (music21_test04.mid), has about 15,000. The note_seq reader keeps
#: a Python object for each: at the cap it takes about 12 s and 400 MB.
MAX_EVENTS = 1_000_000
#: Largest file read, in bytes (32 MiB; a long orchestral MIDI file is well
#: under 1 MiB). A larger file, or an endless one such as ``/dev/zero``, is
#: refused after reading this many bytes.
MAX_FILE_BYTES = 32 * 2**20

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
    """Read a standard MIDI file (format 0 or 1, bare or RIFF-wrapped: RMID) into a ``NoteSequence``.

    Times are in seconds, following the file's tempo map. The sequence keeps
    every note (``pitch``, ``velocity``, ``start_time``, ``end_time``,
    ``instrument``, ``program``, ``is_drum``: channel 10 is the drum kit), the
    track names (``instrument_infos``), ``tempos``, ``time_signatures``,
    ``key_signatures`` (``key`` 0..11 is the tonic's pitch class, 0 = C),
    ``ticks_per_quarter``, ``total_time`` (end of the last note) and
    ``filename`` (``str(path)``, with bytes that are not UTF-8 shown as
    U+FFFD). See the module text for how the two readers differ on ambiguous
    files, and for the caps that bound the work of reading any file.

    Args:
        path: the ``.mid`` file.
        reader: ``"auto"`` or ``"symusic"`` (fast), or ``"note_seq"`` (the reference).

    Returns:
        The ``note_seq.NoteSequence`` (unquantized). A file with no notes gives
        a sequence with no notes; :func:`require_notes` turns that into an error.

    Raises:
        MidiReadError: missing file, a directory, an empty, truncated, corrupt
            or non-MIDI file, SMPTE timing, format 2, a file larger than
            :data:`MAX_FILE_BYTES`.
        MidiValueError: a tempo of 0 or above :data:`MAX_QPM`, a note longer
            than :data:`MAX_NOTE_SECONDS`, a piece longer than
            :data:`MAX_DURATION_SECONDS`, more than :data:`MAX_EVENTS` events,
            an event past :data:`MAX_TICKS`, an impossible time or key signature.
        ConfigError: an unknown ``reader``.

    Example:
        >>> seq = read_midi("tests/fixtures/midi/music21_test01.mid")  # doctest: +SKIP
        >>> len(seq.notes), seq.tempos[0].qpm                            # doctest: +SKIP
        (18, 120.0)

    Notebook: 01_midi_and_notesequences.ipynb
    """
    _check_reader(reader)
    real = os.fsdecode(path)
    return read_midi_bytes(_read_file(real, display_name(real)), real, reader=reader)


def read_midi_bytes(data: bytes, name: str = "<bytes>", *, reader: str = "auto") -> music_pb2.NoteSequence:
    """Read the bytes of a MIDI file into a ``NoteSequence``, like :func:`read_midi`.

    ``name`` stands for the file in error messages and in ``sequence.filename``
    (bytes of a file name that are not UTF-8 shown as U+FFFD, see
    :func:`labkit._common.display_name`). Before either parser runs, a scan of
    the track chunks (:func:`_scan`) refuses a file past the caps
    (:data:`MAX_FILE_BYTES`, :data:`MAX_EVENTS`, :data:`MAX_TICKS`,
    :data:`MAX_DURATION_SECONDS`) and hands the parser a canonical copy.

    >>> seq = read_midi_bytes(midi_to_bytes(note_seq.NoteSequence()))
    >>> len(seq.notes), seq.tempos[0].qpm
    (0, 120.0)

    Notebook: 01_midi_and_notesequences.ipynb
    """
    _check_reader(reader)
    name = display_name(name)
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise MidiReadError(_too_large(), name)
    scan = _scan(data, name)
    if reader == "note_seq":
        sequence = _read_with_note_seq(scan.data, name)
    else:
        sequence = _read_with_symusic(scan.data, scan.header, name)
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
    real = os.fsdecode(path)
    name = display_name(real)
    return _check_header(_unwrap_rmid(_read_file(real, name), name), name)


def _check_reader(reader: str) -> None:
    if reader not in READERS:
        raise ConfigError(f"unknown MIDI reader {reader!r}; choose one of {', '.join(READERS)}")


def _read_file(real: str, name: str) -> bytes:
    """The bytes of the file ``real`` (at most :data:`MAX_FILE_BYTES`), or a MidiReadError naming ``name``."""
    try:
        with open(real, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MidiReadError("no such file", name) from None
    except IsADirectoryError:
        raise MidiReadError("is a directory, not a MIDI file", name) from None
    except PermissionError:
        raise MidiReadError("permission denied", name) from None
    except OSError as exc:
        raise MidiReadError(f"cannot read the file ({exc.strerror or exc})", name) from None
    if len(data) > MAX_FILE_BYTES:
        raise MidiReadError(_too_large(), name)
    return data


def _too_large() -> str:
    limit = f"{MAX_FILE_BYTES / 2**20:g} MiB" if MAX_FILE_BYTES >= 2**20 else f"{MAX_FILE_BYTES:,} bytes"
    return f"too large for a MIDI file (the limit is {limit})"


def _unwrap_rmid(data: bytes, name: str) -> bytes:
    """The standard MIDI file inside a RIFF MIDI file (RMID), or ``data`` itself.

    An RMID file is ``b"RIFF" <size> b"RMID"`` followed by RIFF chunks (4-byte
    type, 4-byte little-endian length, data padded to an even length); the
    chunk ``data`` holds the bytes of a standard MIDI file. Other RIFF files
    (WAV audio) are left as they are, for :func:`_check_header` to name.
    """
    if not (data.startswith(b"RIFF") and data[8:12] == b"RMID"):
        return data
    offset = 12
    while offset + 8 <= len(data):
        kind, length = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        if kind == b"data" and length:
            return data[offset + 8:offset + 8 + length]
        offset += 8 + length + (length & 1)
    raise MidiReadError("a RIFF MIDI file (RMID) without a 'data' chunk holding the MIDI file", name)


def _check_header(data: bytes, name: str) -> MidiHeader:
    """Check the chunk structure of a MIDI file before any parser sees it (see :func:`_chunks`)."""
    return _chunks(data, name)[0]


def _chunks(data: bytes, name: str) -> tuple[MidiHeader, list[tuple[int, int]], bool]:
    """The header, where each track's data lies, and whether the file is plain.

    A MIDI file is a sequence of chunks, each a 4-byte type and a 4-byte
    big-endian length. The first is ``MThd`` with three 16-bit numbers:
    format, number of tracks, division; then come the ``MTrk`` track chunks
    (chunks of other types may appear; they are skipped). Returns the header,
    ``(start, end)`` byte offsets of the data of the declared track chunks, and
    whether the file is *plain*: a 6-byte header followed by exactly those
    track chunks and nothing else.
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

    offset, tracks_found, spans, plain = 8 + header_length, 0, [], header_length == 6
    while offset < len(data) and tracks_found < num_tracks:
        if offset + 8 > len(data):
            raise MidiReadError(f"truncated: the file ends inside a chunk header at byte {offset}", name)
        kind, length = data[offset:offset + 4], struct.unpack(">I", data[offset + 4:offset + 8])[0]
        plain = plain and kind == b"MTrk"
        if kind == b"MTrk":
            tracks_found += 1
            spans.append((offset + 8, offset + 8 + length))
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
    return MidiHeader(fmt, num_tracks, division), spans, plain and offset == len(data)


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


# --- the scan before parsing -----------------------------------------------------------

class _Scan(NamedTuple):
    """What :func:`_scan` finds in a MIDI file, before any parser runs.

    ``track_ends``: the tick of each track's last event (its end of track);
    ``track_events``: the number of events of each track (meta and sysex events
    included, as mido counts them); ``tempos``: ``(tick, microseconds per
    quarter)`` of every tempo event of every track, sorted by tick (stable);
    ``seconds``: the time of the file's last event under that tempo map;
    ``data``: the canonical file the parsers read (see :func:`_scan`).
    """

    header: MidiHeader
    track_ends: tuple[int, ...]
    track_events: tuple[int, ...]
    tempos: tuple[tuple[int, int], ...]
    seconds: float
    data: bytes


#: Data bytes after a channel status byte, by its high nibble (0x8 note-off ... 0xE pitch bend).
_CHANNEL_DATA_BYTES = (0,) * 8 + (2, 2, 2, 2, 1, 1, 2) + (0,)
#: Data bytes after a system common or real-time status byte (which a MIDI file should not hold;
#: F0 and F7 sysex and FF meta events give their length instead; F4, F5, F9 and FD are undefined).
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}
#: Meta events whose data has one right length: type -> (length, what it is).
_META_LENGTH = {0x51: (3, "tempo"), 0x58: (4, "time signature"), 0x59: (2, "key signature")}


def _scan(data: bytes, name: str) -> _Scan:
    """Walk every event of every track in Python, check the caps, and make the file canonical.

    Runs before either parser, so a hostile file costs time in proportion to
    its size and never reaches a parser that would allocate per tick: it
    refuses a file with more than :data:`MAX_EVENTS` events (as soon as it has
    counted them), an event later than :data:`MAX_TICKS`, or a last event later
    than :data:`MAX_DURATION_SECONDS` under the tempo map, with one line
    (:class:`MidiValueError`); and any event that cannot be read (a time delta
    longer than 4 bytes, a data byte above 127, an undefined status byte,
    running status with no status byte in force, a tempo, time or key signature
    event of the wrong length, an event cut by the end of its track) as
    corrupt (:class:`MidiReadError`).

    The parsers then read a *canonical* copy, on which symusic and mido agree:
    the RMID wrapper removed (:func:`_unwrap_rmid`), a 6-byte header, only the
    declared track chunks, each ending at its end-of-track event, and without
    sysex (F0, F7) or system events (both readers drop them; symusic misreads
    an F7 escape and mido fails on one holding bytes above 127): their time
    deltas pass to the next event. Running status goes on across meta events
    (as both parsers read it); after a sysex or system event it is refused,
    since what follows is ambiguous. A plain file is passed on as it is.

    >>> track = bytes([0, 0xF7, 2, 0xF3, 1,  0, 0x90, 60, 64,  96, 60, 0,  0, 0xFF, 0x2F, 0])
    >>> scan = _scan(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", 16) + track, "f")
    >>> scan.track_ends, scan.track_events, scan.seconds
    ((96,), (4,), 0.5)
    >>> scan.data[22:]  # the F7 escape is gone
    b'\\x00\\x90<@`<\\x00\\x00\\xff/\\x00'
    """
    data = _unwrap_rmid(data, name)
    header, spans, plain = _chunks(data, name)
    track_ends, track_events, tempos, stops, stripped = [], [], [], [], []
    budget = MAX_EVENTS
    for number, (start, end) in enumerate(spans, 1):
        tick, events, stop, strips = _scan_track(data, start, end, number, name, budget, tempos)
        budget -= events
        track_ends.append(tick)
        track_events.append(events)
        stops.append(stop)
        stripped.append(strips)

    tempos.sort(key=lambda tempo: tempo[0])
    last = max(track_ends)
    tempo_ticks, tempo_mspq = _tempo_map({"time": np.array([t for t, _ in tempos], dtype=np.int64),
                                          "mspq": np.array([m for _, m in tempos], dtype=np.int64)}, name)
    seconds = float(_tick_clock(tempo_ticks, tempo_mspq, header.ticks_per_quarter)(last))
    if seconds > MAX_DURATION_SECONDS:
        raise MidiValueError(f"the music lasts {_hours(seconds)} (the limit is {_hours(MAX_DURATION_SECONDS)})",
                             name)
    if last > MAX_TICKS:
        raise MidiValueError(f"an event at tick {last:,} ({header.ticks_per_quarter} ticks per quarter note; "
                             f"the limit is tick {MAX_TICKS:,})", name)

    if plain and not any(stripped) and stops == [end for _, end in spans]:
        return _Scan(header, tuple(track_ends), tuple(track_events), tuple(tempos), seconds, data)
    parts = [b"MThd", struct.pack(">IHHH", 6, *header)]
    for number, ((start, _), stop, strips) in enumerate(zip(spans, stops, stripped), 1):
        if strips:
            out: list[bytes] = []
            _scan_track(data, start, stop, number, name, MAX_EVENTS, [], out)
            body = b"".join(out)
        else:
            body = data[start:stop]
        parts += [b"MTrk", len(body).to_bytes(4, "big"), body]
    return _Scan(header, tuple(track_ends), tuple(track_events), tuple(tempos), seconds, b"".join(parts))


def _scan_track(data: bytes, start: int, end: int, number: int, name: str, budget: int,
                tempos: list, out: list | None = None) -> tuple[int, int, int, int]:
    """Walk the events of one track chunk (``data[start:end]``), as :func:`_scan` describes.

    Appends ``(tick, microseconds per quarter)`` of its tempo events to
    ``tempos``; with ``out``, appends the bytes of the canonical track (sysex
    and system events left out). Returns the tick of the last event, the
    number of events, the offset just past the end-of-track event (or ``end``)
    and the number of events that the canonical track leaves out.
    """
    def corrupt(problem: str, at: int) -> MidiReadError:
        return MidiReadError(f"corrupt MIDI data (track {number}, byte {at}: {problem})", name)

    channel_data, system_data = _CHANNEL_DATA_BYTES, _SYSTEM_DATA_BYTES
    i, tick, status, events, left_out, pending = start, 0, 0, 0, 0, 0
    while i < end:
        at = i
        byte = data[i]
        delta, i, size = byte & 0x7F, i + 1, 1
        while byte & 0x80:  # a variable-length quantity: 7 bits a byte, high bit set on all but the last
            if i >= end or size == 4:
                raise corrupt("a time delta longer than 4 bytes" if size == 4 else "the track ends inside "
                              "a time delta", at)
            byte = data[i]
            delta, i, size = (delta << 7) | (byte & 0x7F), i + 1, size + 1
        tick += delta
        if i >= end:
            raise corrupt("the track ends after a time delta, before its event", at)
        first, byte = i, data[i]
        keep, last_event = True, False
        if byte < 0x80:  # running status: the status byte of the last channel event goes on
            if not status:
                raise corrupt(f"data byte {byte} where a status byte must be; no running status is in force", i)
            i += channel_data[status >> 4]
            if i > end:
                raise corrupt("the track ends inside an event", first)
            if i - first == 2 and data[first + 1] > 0x7F:
                raise corrupt(f"data byte {data[first + 1]} after status 0x{status:02X} "
                              "(data bytes stop at 127)", first + 1)
        elif byte < 0xF0:  # a channel event
            status = byte
            i += 1 + channel_data[byte >> 4]
            if i > end:
                raise corrupt("the track ends inside an event", first)
            for k in range(first + 1, i):
                if data[k] > 0x7F:
                    raise corrupt(f"data byte {data[k]} after status 0x{byte:02X} (data bytes stop at 127)", k)
        elif byte == 0xFF:  # a meta event: type, length, data
            if first + 2 >= end:
                raise corrupt("the track ends inside a meta event", first)
            kind = data[first + 1]
            length, i = _length(data, first + 2, end, corrupt)
            if i + length > end:
                raise corrupt(f"a meta event of {length} bytes runs past the end of the track", first)
            if kind in _META_LENGTH and length != _META_LENGTH[kind][0]:
                right, what = _META_LENGTH[kind]
                raise corrupt(f"a {what} event of {length} bytes (it must have {right})", first)
            if kind == 0x51:
                tempos.append((tick, int.from_bytes(data[i:i + 3], "big")))
            i += length
            last_event = kind == 0x2F
        elif byte == 0xF0 or byte == 0xF7:  # sysex, or a sysex escape: length, data
            length, i = _length(data, first + 1, end, corrupt)
            if i + length > end:
                raise corrupt(f"a sysex event of {length} bytes runs past the end of the track", first)
            i += length
            status, keep = 0, False
        elif byte in system_data:
            i += 1 + system_data[byte]
            if i > end or any(b > 0x7F for b in data[first + 1:i]):
                raise corrupt(f"a broken system event 0x{byte:02X}", first)
            status, keep = 0, False
        else:
            raise corrupt(f"undefined status byte 0x{byte:02X}", first)
        events += 1
        if events > budget:
            raise MidiValueError(f"holds more than {MAX_EVENTS:,} events (the limit for one file)", name)
        if not keep:
            left_out += 1
        if out is not None:
            if keep:
                out.append(_variable_length(pending + delta))
                out.append(data[first:i])
                pending = 0
            else:
                pending += delta
        if last_event:
            break
    return tick, events, i, left_out


def _length(data: bytes, i: int, end: int, corrupt) -> tuple[int, int]:
    """A variable-length quantity at ``data[i:]`` (at most 4 bytes): ``(value, offset after it)``."""
    value = 0
    for size in range(4):
        if i >= end:
            raise corrupt("the track ends inside a length", i)
        byte = data[i]
        value, i = (value << 7) | (byte & 0x7F), i + 1
        if byte < 0x80:
            return value, i
    raise corrupt("a length longer than 4 bytes", i - 4)


def _variable_length(value: int) -> bytes:
    """``value`` as a MIDI variable-length quantity (7 bits a byte, most significant first).

    >>> _variable_length(0), _variable_length(0x80), _variable_length(0x0FFFFFFF)
    (b'\\x00', b'\\x81\\x00', b'\\xff\\xff\\xff\\x7f')
    """
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


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
    _merge_tempos(sequence)
    _check_values(sequence, name)
    return sequence


def _merge_tempos(sequence: music_pb2.NoteSequence) -> None:
    """Make note_seq's tempo map the one :func:`_tempo_map` gives, in place.

    pretty_midi keeps every change of tempo at one tick (after the first);
    only the last sounds, so keep that one, and drop a change that repeats the
    tempo in force. The time of every note stays as it is.
    """
    kept: list[tuple[float, float]] = []
    for tempo in sequence.tempos:
        if kept and kept[-1][0] == tempo.time:
            kept.pop()
        if not kept or kept[-1][1] != tempo.qpm:
            kept.append((tempo.time, tempo.qpm))
    if len(kept) != len(sequence.tempos):
        del sequence.tempos[:]
        for time, qpm in kept:
            sequence.tempos.add(time=time, qpm=qpm)


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
    name = display_name(path) if path is not None else (sequence.filename or None)
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
