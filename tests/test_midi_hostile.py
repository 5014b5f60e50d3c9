"""Hostile MIDI input: crafted files, the caps on the work of reading, and property-based tests.

Every file here is built byte by byte at run time (:func:`smf`), so each one tests one
thing: sysex events and F7 escapes, running status across a meta event, ticks near 2**31,
huge ticks per quarter with huge time deltas, RIFF-wrapped MIDI, file names that are not
UTF-8. The Hypothesis tests mutate the real fixture files (flip, insert, delete, truncate)
and write random valid files: no input may raise anything but a LabkitError or give more
than the caps allow, and on valid files both readers agree note for note.
"""
from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit._common import display_name
from labkit.errors import LabkitError, MidiReadError, MidiValueError
from labkit.midi_io import (MAX_DURATION_SECONDS, MAX_EVENTS, MAX_TICKS, _scan, _variable_length, read_header,
                            read_midi, read_midi_bytes, require_notes)

FIXTURES = Path(__file__).parent / "fixtures" / "midi"
GOOD = sorted(FIXTURES.glob("*.mid"))
READERS = ("symusic", "note_seq")


# --- writing MIDI files byte by byte ----------------------------------------------------

def smf(*tracks: list[tuple[int, bytes]], tpq: int = 480, fmt: int | None = None) -> bytes:
    """A standard MIDI file: each track a list of ``(tick, event bytes)``; an end of track is added.

    The events are written in the order given (their ticks must not decrease), each
    after its time delta, byte for byte as given: a channel event without its status
    byte is written with running status.
    """
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    chunks = [b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpq)]
    for events in tracks:
        body, now = bytearray(), 0
        for tick, event in [*events, (max([t for t, _ in events], default=0), b"\xff\x2f\x00")]:
            assert tick >= now, "ticks must not decrease"
            body += _variable_length(tick - now) + event
            now = tick
        chunks.append(b"MTrk" + struct.pack(">I", len(body)) + bytes(body))
    return b"".join(chunks)


def on(pitch, velocity=80, channel=0) -> bytes:
    return bytes([0x90 | channel, pitch, velocity])


def off(pitch, channel=0) -> bytes:
    return bytes([0x80 | channel, pitch, 0])


def tempo(microseconds_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + microseconds_per_quarter.to_bytes(3, "big")


def text(words: bytes) -> bytes:
    return b"\xff\x01" + _variable_length(len(words)) + words


def sysex(data: bytes, escape: bool = False) -> bytes:
    """An F0 sysex event (``data`` then F7), or with ``escape`` an F7 escape holding any bytes."""
    body = data if escape else data + b"\xf7"
    return (b"\xf7" if escape else b"\xf0") + _variable_length(len(body)) + body


def notes_of(sequence) -> list[tuple]:
    """Every note as ``(instrument, program, is_drum, pitch, velocity, start, end)``, sorted."""
    return sorted((n.instrument, n.program, n.is_drum, n.pitch, n.velocity, n.start_time, n.end_time)
                  for n in sequence.notes)


def assert_same_notes(a, b):
    """Two sequences hold the same notes (times to a microsecond), grouped alike, and the same tempo map.

    The instrument *numbers* are compared only through the grouping: in a track that holds
    several channels, symusic numbers its instruments by channel and program, note_seq by
    first note-off (the module text, difference 4).
    """
    x, y = notes_of(a), notes_of(b)
    assert len(x) == len(y)
    if x:
        xs, ys = (np.array(sorted(row[1:] for row in rows), dtype=np.float64) for rows in (x, y))
        np.testing.assert_array_equal(xs[:, :4], ys[:, :4])  # program, is_drum, pitch, velocity
        np.testing.assert_allclose(xs[:, 4:], ys[:, 4:], rtol=0, atol=1e-6)  # start, end (seconds)
        assert groups(a) == groups(b)
    np.testing.assert_allclose([(t.time, t.qpm) for t in a.tempos], [(t.time, t.qpm) for t in b.tempos],
                               rtol=1e-9, atol=1e-6)


def groups(sequence) -> list[list[tuple]]:
    """The notes of each instrument (program, is_drum, pitch, velocity, start in ms), sorted."""
    by_instrument: dict[int, list[tuple]] = {}
    for n in sequence.notes:
        by_instrument.setdefault(n.instrument, []).append((n.program, n.is_drum, n.pitch, n.velocity,
                                                           round(n.start_time * 1000)))
    return sorted(sorted(rows) for rows in by_instrument.values())


def both(data: bytes, name: str = "crafted.mid"):
    """The sequences of both readers, which must agree note for note; returns the symusic one."""
    ours, reference = (read_midi_bytes(data, name, reader=reader) for reader in READERS)
    assert_same_notes(ours, reference)
    return ours


def refused(data: bytes, error=LabkitError, name: str = "crafted.mid") -> str:
    """Both readers refuse ``data`` with the same one line; returns it."""
    lines = []
    for reader in READERS:
        with pytest.raises(error) as info:
            read_midi_bytes(data, name, reader=reader)
        message = str(info.value)
        assert message.startswith(f"{name}: ") and "\n" not in message
        assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
        lines.append(message)
    assert lines[0] == lines[1]
    return lines[0]


MELODY = [(0, tempo(500_000)), (0, on(60)), (480, off(60)), (480, on(62)), (960, off(62)), (960, on(64)),
          (1440, off(64))]
#: What MELODY reads as: (pitch, start, end) in seconds at 120 qpm.
MELODY_NOTES = [(60, 0.0, 0.5), (62, 0.5, 1.0), (64, 1.0, 1.5)]


def times(sequence) -> list[tuple]:
    return [(n.pitch, round(n.start_time, 9), round(n.end_time, 9)) for n in sequence.notes]


# --- crafted files: what once differed between the readers now agrees -------------------

def test_a_plain_melody_reads_alike():
    assert times(both(smf(MELODY))) == MELODY_NOTES


def test_an_f0_sysex_event_changes_no_note():
    gm_on = sysex(bytes([0x7E, 0x7F, 0x09, 0x01]))
    events = [(0, gm_on), *MELODY[:3], (480, sysex(bytes([0x41, 0x10, 0x42]))), *MELODY[3:]]
    assert times(both(smf(events))) == MELODY_NOTES


def test_an_f7_escape_changes_no_note():
    """symusic read an F7 escape as if it ran to the next F7, shifting every later note; mido failed on it."""
    events = [(0, sysex(b"\xf3\x01", escape=True)), *MELODY[:3],
              (480, sysex(bytes([0x43, 0x12, 0x00, 0x07, 0x7F]), escape=True)), *MELODY[3:]]
    assert times(both(smf(events))) == MELODY_NOTES


def test_a_sysex_split_into_an_f0_and_an_f7_continuation():
    events = [(0, b"\xf0\x02\x43\x12"),  # a sysex event without its closing F7: more follows
              (10, sysex(b"\x00\x01\xf7", escape=True)), *[(t + 10, e) for t, e in MELODY]]
    seq = both(smf(events))
    assert times(seq)[0][1] == pytest.approx(10 / 960)


def test_running_status_goes_on_across_a_meta_event():
    events = [(0, tempo(500_000)), (0, on(60)), (240, text(b"verse")), (480, bytes([60, 0])),  # note-on, velocity 0
              (480, bytes([62, 80])), (960, text(b"chorus")), (960, bytes([62, 0]))]
    assert times(both(smf(events))) == [(60, 0.0, 0.5), (62, 0.5, 1.0)]


def test_running_status_after_a_sysex_event_is_refused():
    """A sysex event cancels running status (the MIDI file standard); what follows it is ambiguous."""
    events = [(0, on(60)), (240, sysex(b"\x01")), (480, bytes([60, 0]))]
    assert "no running status is in force" in refused(smf(events), MidiReadError)


def test_events_after_the_end_of_track_are_ignored_by_both():
    data = smf(MELODY)
    more = _variable_length(0) + on(72) + _variable_length(480) + off(72)
    track_length = struct.unpack(">I", data[18:22])[0]
    data = data[:18] + struct.pack(">I", track_length + len(more)) + data[22:] + more
    assert times(both(data)) == MELODY_NOTES


def test_chunks_that_are_not_tracks_and_a_long_header_are_skipped_by_both():
    data = smf(MELODY)
    padded = data[:4] + struct.pack(">I", 8) + data[8:14] + b"\x00\x00" + b"XFIH" + struct.pack(">I", 3) + b"abc"
    assert times(both(padded + data[14:])) == MELODY_NOTES


@pytest.mark.parametrize("status", [0xF8, 0xFE])
def test_system_real_time_bytes_are_left_out(status):
    events = [(0, bytes([status])), *MELODY]
    assert times(both(smf(events))) == MELODY_NOTES


@pytest.mark.parametrize("event, words", [
    (bytes([0xF4]), "undefined status byte 0xF4"),
    (b"\xff\x51\x02\x07\xa1", "a tempo event of 2 bytes (it must have 3)"),
    (b"\xff\x58\x02\x04\x02", "a time signature event of 2 bytes (it must have 4)"),
    (bytes([0x90, 60, 200]), "data byte 200 after status 0x90"),
    (bytes([60, 64]), "no running status is in force"),
])
def test_unreadable_events_are_corrupt_in_both_readers(event, words):
    assert words in refused(smf([(0, event), *MELODY]), MidiReadError)


def test_a_time_delta_longer_than_four_bytes_is_corrupt():
    data = smf(MELODY)
    data = data[:18] + struct.pack(">I", struct.unpack(">I", data[18:22])[0] + 4) + b"\x80" * 4 + data[22:]
    assert "a time delta longer than 4 bytes" in refused(data, MidiReadError)


# --- ticks near 2**31, huge ticks per quarter: refused by both, at once, in one line --------

def hostile_163_bytes() -> bytes:
    """The file of issue 16: 163 bytes, 0x7FFF ticks per quarter, ten notes each after a delta of 0x0FFFFFFF."""
    events, tick = [(0, text(b"x" * 23))], 0
    for _ in range(10):
        tick += 0x0FFFFFFF
        events += [(tick, on(60)), (tick + 1, off(60))]
    data = smf(events, tpq=0x7FFF)
    assert len(data) == 163
    return data


def fillers(tick: int) -> list[tuple[int, bytes]]:
    """Empty text events every 0x0FFFFFFF ticks before ``tick``: a time delta holds at most 28 bits."""
    return [(t, text(b"")) for t in range(0x0FFFFFFF, tick, 0x0FFFFFFF)]


def test_the_163_byte_file_is_refused_quickly_by_both_readers():
    data = hostile_163_bytes()
    start = time.perf_counter()
    line = refused(data, MidiValueError)
    assert time.perf_counter() - start < 1.0
    # 10 * (0x0FFFFFFF + 1) ticks at 32767 ticks per quarter and 120 qpm: 2**31 ticks is 9.1 hours.
    assert line == "crafted.mid: the music lasts 11.4 hours (the limit is 3.0 hours)"


def test_an_over_long_file_reports_its_true_length():
    """The symusic reader's 32-bit ticks wrapped: 932 hours came out as 543.7."""
    tick = 932 * 3600 * 960  # 932 hours at 480 ticks per quarter and 120 qpm: 3.2e9 ticks, past 2**31
    data = smf([(0, on(60)), *fillers(tick), (tick, off(60))], tpq=480)
    assert refused(data, MidiValueError) == "crafted.mid: the music lasts 932.0 hours (the limit is 3.0 hours)"


@pytest.mark.parametrize("tick", [2**31 - 1, 2**31 + 1], ids=["just_under_2_31", "just_over_2_31"])
def test_ticks_near_2_31_are_refused_by_the_tick_cap(tick):
    # 1000 qpm at 32767 ticks per quarter: 2**31 ticks last only 65.5 minutes, under the duration cap.
    events = [(0, tempo(60_000)), (0, on(60)), (1, off(60)), *fillers(tick - 1), (tick - 1, on(62)),
              (tick, off(62))]
    line = refused(smf(events, tpq=0x7FFF), MidiValueError)
    assert line == (f"crafted.mid: an event at tick {tick:,} (32767 ticks per quarter note; "
                    f"the limit is tick {MAX_TICKS:,})")


def test_the_last_tick_allowed_reads_alike_in_both_readers():
    """At the cap the note_seq reader's tick table is at its largest (MAX_TICKS floats); both still agree."""
    events = [(0, tempo(60_000)), (0, on(60)), (MAX_TICKS - 100, off(60)), (MAX_TICKS - 50, on(62)),
              (MAX_TICKS, off(62))]
    seq = both(smf(events, tpq=0x7FFF))
    assert [n.pitch for n in seq.notes] == [60, 62]
    assert seq.notes[1].end_time == pytest.approx(MAX_TICKS * 0.06 / 0x7FFF)


def test_too_many_events_are_refused_as_soon_as_counted(monkeypatch):
    monkeypatch.setattr("labkit.midi_io.MAX_EVENTS", 100)
    events = [(i, on(60) if i % 2 == 0 else off(60)) for i in range(1000)]
    assert refused(smf(events), MidiValueError) == "crafted.mid: holds more than 100 events (the limit for one file)"


def test_a_file_past_the_size_cap_is_refused_before_it_is_read_whole(monkeypatch, tmp_path):
    monkeypatch.setattr("labkit.midi_io.MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.mid"
    path.write_bytes(smf([(i, on(60) if i % 2 == 0 else off(60)) for i in range(1000)]))
    with pytest.raises(MidiReadError, match=r"big.mid: too large for a MIDI file \(the limit is 1,000 bytes\)$"):
        read_midi(path)
    with pytest.raises(MidiReadError, match="too large for a MIDI file"):
        read_midi_bytes(path.read_bytes())


def test_an_endless_file_is_not_read_forever(monkeypatch):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    monkeypatch.setattr("labkit.midi_io.MAX_FILE_BYTES", 2**16)
    with pytest.raises(MidiReadError, match="^/dev/zero: too large for a MIDI file"):
        read_midi("/dev/zero")


# --- the scan agrees with the parsers on every fixture --------------------------------

@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_the_scan_agrees_with_the_parsers(path):
    scan = _scan(path.read_bytes(), path.name)
    midi = mido.MidiFile(path)
    assert scan.header == read_header(path)
    assert list(scan.track_events) == [len(track) for track in midi.tracks]
    assert list(scan.track_ends) == [sum(msg.time for msg in track) for track in midi.tracks]
    tempos = []  # every tempo event as mido reads it, by tick (stable: track order at one tick)
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
    assert list(scan.tempos) == sorted(tempos, key=lambda tempo: tempo[0])
    clock, at, mspq = 0.0, 0, 500_000  # the time of the last event, walking the tempo map
    for tick, value in scan.tempos:
        clock, at, mspq = clock + (tick - at) * mspq / 1e6 / midi.ticks_per_beat, tick, value
    clock += (max(scan.track_ends) - at) * mspq / 1e6 / midi.ticks_per_beat
    assert scan.seconds == pytest.approx(clock, rel=1e-9)
    seq = read_midi(path)
    assert seq.total_time <= scan.seconds + 1e-9
    # Both parsers see every note: the canonical copy holds what the file holds.
    assert len(read_midi_bytes(scan.data, path.name).notes) == len(seq.notes)


# --- RIFF MIDI (RMID), file names that are not UTF-8 ------------------------------------

def rmid(midi: bytes, before: bytes = b"") -> bytes:
    """``midi`` wrapped in a RIFF MIDI file, after the RIFF chunks ``before``."""
    body = b"RMID" + before + b"data" + struct.pack("<I", len(midi)) + midi + b"\x00" * (len(midi) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_riff_midi_is_read_by_both_readers(tmp_path):
    info = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # an odd-sized chunk, padded
    path = tmp_path / "song.rmi"
    path.write_bytes(rmid(smf(MELODY), before=info))
    for reader in READERS:
        assert times(read_midi(path, reader=reader)) == MELODY_NOTES
    assert read_header(path).ticks_per_quarter == 480


def test_riff_wave_is_still_called_wav_audio_and_rmid_without_data_is_named():
    wave = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(32)
    assert "not a MIDI file: it looks like a RIFF file (WAV audio?)" in refused(wave, MidiReadError)
    assert "RIFF MIDI file (RMID) without a 'data' chunk" in refused(b"RIFF\x04\x00\x00\x00RMID", MidiReadError)


def test_a_file_name_that_is_not_utf8_reads_and_errors_print(tmp_path):
    good = tmp_path / os.fsdecode(b"caf\xe9.mid")  # Latin-1 bytes: not UTF-8
    good.write_bytes(smf(MELODY))
    for reader in READERS:
        seq = read_midi(good, reader=reader)
        assert seq.filename == display_name(good) == str(tmp_path / "caf\ufffd.mid")
        seq.SerializeToString()  # protobuf takes the name
    assert read_midi(os.fsencode(good)).filename == seq.filename  # a bytes path too
    assert read_header(good).ticks_per_quarter == 480

    bad = tmp_path / os.fsdecode(b"bad\xff.mid")
    bad.write_bytes(b"not midi")
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    for call in (lambda: read_midi(bad), lambda: read_midi(bad, reader="note_seq"), lambda: read_header(bad),
                 lambda: read_midi_bytes(b"", os.fspath(bad))):
        with pytest.raises(MidiReadError) as info:
            call()
        assert str(info.value).startswith(str(tmp_path / "bad\ufffd.mid") + ": ")
        print(f"labkit: {info.value}", file=stdout)  # a UTF-8 stream takes it
    with pytest.raises(LabkitError) as info:
        require_notes(read_midi_bytes(smf([(0, text(b"x"))])), bad)
    print(info.value, file=stdout)


# --- property-based tests ---------------------------------------------------------------

#: Reproducible in CI: a fixed sequence of examples, no example database written to disk, no time limit.
PROPERTY = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
#: Fixtures small enough to mutate a hundred times with both readers.
SMALL = [p for p in GOOD if p.stat().st_size < 13_000]
#: Mutations: (kind, position as a fraction of the length, a byte, a count).
MUTATION = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]),
                     st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 16))


def mutate(data: bytes, mutations) -> bytes:
    data = bytearray(data)
    for kind, where, byte, count in mutations:
        if not data:
            break
        at = int(where * len(data))
        if kind == "flip":
            data[at] ^= 1 << (byte % 8)
        elif kind == "set":
            data[at] = byte
        elif kind == "insert":
            data[at:at] = bytes([byte]) * count
        elif kind == "delete":
            del data[at:at + count]
        else:
            del data[at:]
    return bytes(data)


def check_bounded(data: bytes, reader: str) -> None:
    """Reading either succeeds within the caps or raises a LabkitError in one line."""
    try:
        seq = read_midi_bytes(data, "mutant.mid", reader=reader)
    except LabkitError as error:
        assert "\n" not in str(error) and str(error).startswith("mutant.mid: ")
        return
    assert seq.total_time <= MAX_DURATION_SECONDS
    assert len(seq.notes) <= MAX_EVENTS // 2
    assert all(n.end_time - n.start_time >= 0 for n in seq.notes)


@settings(PROPERTY, max_examples=150)
@given(path=st.sampled_from(SMALL), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_fixtures_raise_only_labkit_errors_within_the_caps(path, mutations):
    data = mutate(path.read_bytes(), mutations)
    for reader in READERS:
        check_bounded(data, reader)


@settings(PROPERTY, max_examples=150)
@given(data=st.binary(max_size=64), header=st.sampled_from([b"", b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0",
                                                              b"RIFF\x00\x00\x00\x00RMIDdata\x00\x01\x00\x00"]))
def test_random_bytes_raise_only_labkit_errors(data, header):
    for reader in READERS:
        check_bounded(header + data, reader)


@st.composite
def valid_files(draw) -> bytes:
    """A random valid MIDI file: 1 to 3 tracks, the tempo map on the first, notes that never overlap a
    sounding note of their own key, sysex events, F7 escapes, text and control events, running status.

    It stays clear of what the module text lists as ambiguous (tempo events off the first track,
    keys struck again while they sound, program changes during a note), where the readers may differ.
    """
    tpq = draw(st.integers(24, 0x7FFF))  # 23,000 ticks at 24 a quarter and 20 qpm: 48 minutes, under the cap
    num_tracks = draw(st.integers(1, 3))
    tracks = []
    for number in range(num_tracks):
        events = []  # (tick, order, bytes): order puts note-offs before note-ons at one tick
        if number == 0:
            for tick, mspq in draw(st.lists(st.tuples(st.integers(0, 20_000), st.integers(60_000, 3_000_000)),
                                            max_size=4)):
                events.append((tick, 0, tempo(mspq)))
        channels = draw(st.lists(st.integers(0, 15), min_size=1, max_size=3, unique=True))
        for channel in channels:
            events.append((0, 0, bytes([0xC0 | channel, draw(st.integers(0, 127))])))
        busy: dict[tuple[int, int], int] = {}  # (channel, pitch) -> when its last note ends
        for start, length, pitch, velocity, channel, zero_off in draw(st.lists(st.tuples(
                st.integers(0, 20_000), st.integers(1, 3_000), st.integers(0, 127), st.integers(1, 127),
                st.sampled_from(channels), st.booleans()), max_size=25)):
            if busy.get((channel, pitch), -1) > start:
                continue
            busy[(channel, pitch)] = start + length
            events.append((start, 2, on(pitch, velocity, channel)))
            events.append((start + length, 1, on(pitch, 0, channel) if zero_off else off(pitch, channel)))
        for tick, kind, payload in draw(st.lists(st.tuples(
                st.integers(0, 20_000), st.sampled_from(["f0", "f7", "text", "control"]),
                st.binary(max_size=6)), max_size=6)):
            if kind == "control":
                event = bytes([0xB0 | channels[0], payload[0] & 0x7F if payload else 7, 64])
            else:
                event = {"f0": sysex(bytes(b & 0x7F for b in payload)), "f7": sysex(payload, escape=True),
                         "text": text(payload)}[kind]
            events.append((tick, 1, event))
        events.sort(key=lambda e: (e[0], e[1]))
        tracks.append(_running_status([(tick, event) for tick, _, event in events], draw(st.booleans())))
    return smf(*tracks, tpq=tpq)


def _running_status(events, use: bool):
    """Drop repeated channel status bytes (running status), which go on across meta events, not sysex."""
    if not use:
        return events
    out, status = [], None
    for tick, event in events:
        if 0x80 <= event[0] < 0xF0:
            out.append((tick, event[1:] if event[0] == status else event))
            status = event[0]
        else:
            out.append((tick, event))
            if event[0] != 0xFF:
                status = None
    return out


@settings(PROPERTY, max_examples=120)
@given(data=valid_files())
def test_both_readers_agree_on_random_valid_files(data):
    ours = both(data, "random.mid")
    assert ours.total_time <= MAX_DURATION_SECONDS
    reread = mido.MidiFile(file=io.BytesIO(_scan(data, "random.mid").data))  # the canonical copy is sound MIDI
    assert not any(msg.type == "sysex" for track in reread.tracks for msg in track)
