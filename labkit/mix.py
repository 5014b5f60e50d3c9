"""Mixing: several voices (tracks) into one stereo piece, with volume, pan, instrument, a room and a master level.

A *track* (:class:`Track`) is one voice of the mix: a MIDI file, a ``NoteSequence`` or a
:class:`~labkit.melody.Melody` (a generated melody, a harmonized part, or the :func:`drone` and
:func:`accompaniment` built here from a melody's key), with

* ``volume_db``: its level in dB, from :data:`VOLUME_DB_RANGE` (-60..+12; 0 = as rendered, +6 dB =
  twice the amplitude). Decibels, not a linear factor, because equal steps in dB sound like equal
  steps in loudness, and because the issue's checks (+6 dB -> RMS x 2) read directly in them;
* ``pan`` in [-1, 1] (-1 hard left, 0 centre, 1 hard right) with the constant-power law
  ``L = cos((p + 1) pi / 4)``, ``R = sin((p + 1) pi / 4)``: the sum of the two powers is the same
  wherever the voice sits, so the centre is 3 dB below hard left in each channel (``cos(pi/4)`` =
  -3.01 dB) and a voice moved across the stage keeps its loudness;
* ``program``: the General MIDI instrument (0 piano, 40 violin, 48 strings, 73 flute, ...), or
  ``None`` to keep the file's own programs.

How a track is rendered: :func:`labkit.audio.render_stems` plays it with the SoundFont (its stems
are not normalised, so the voices keep their relative levels), the stereo stems are folded to mono
(``(L + R) / sqrt(2)``: a centred SoundFont voice comes back at its own level) and the mono voice is
placed with the pan law above. The voices are summed at :data:`TRACK_GAIN_DB` above the SoundFont's
level (its voices peak well under full scale), then the *room* (:data:`REVERB_RANGE`: 0 = dry) is
pedalboard's reverb (Spotify's wrapper of JUCE's Freeverb-style reverb: a well-kept library, not an
effect written here), then the *master* level (dB). Nothing is normalised: the levels you set are
the levels you get, so a track 6 dB louder has exactly twice the RMS. Only when the master would
clip (a peak above 0 dBFS) is the whole mix scaled down to :data:`audio.PEAK_DBFS` (the result says
by how much), never limited unevenly.

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit.audio import DEFAULT_SAMPLE_RATE, PEAK_DBFS, render_stems, write_wav
from labkit.errors import ConfigError, LabkitError
from labkit.melody import Melody, estimate_key

#: Range of a track's volume and of the master level, in dB (-60 dB is near silence, +12 dB four times louder).
VOLUME_DB_RANGE = (-60.0, 12.0)
#: Range of a pan position: -1 hard left, 0 centre, 1 hard right.
PAN_RANGE = (-1.0, 1.0)
#: Range of the room (reverb) amount: 0 dry, 1 a large wet hall.
REVERB_RANGE = (0.0, 1.0)
#: Level of every track above the SoundFont's own level, in dB (its voices peak around -10..-20 dBFS).
TRACK_GAIN_DB = 6.0
#: Seconds of room tail added after the last sound at reverb amount 1 (proportionally less below).
REVERB_TAIL_S = 3.0
#: Velocity of the notes of :func:`drone` and :func:`accompaniment` (softer than a melody's 100).
BACKING_VELOCITY = 70


@dataclass(frozen=True)
class Track:
    """One voice of a mix: what to play and how loud, where and on what instrument.

    Attributes:
        source: a MIDI file path, a ``NoteSequence`` or a :class:`~labkit.melody.Melody`.
        volume_db: level in dB, in :data:`VOLUME_DB_RANGE` (0: as rendered).
        pan: -1 (left) .. 1 (right), constant power.
        program: General MIDI program 0..127 for all pitched notes, or ``None`` (the file's own).
        name: a label for messages (default: the file name).

    Notebook: 10_mixing_and_performance.ipynb
    """

    source: object
    volume_db: float = 0.0
    pan: float = 0.0
    program: int | None = None
    name: str = ""

    def validate(self) -> "Track":
        """Return ``self`` if every setting lies in its range, else raise :class:`ConfigError` naming it."""
        where = self.name or (os.fspath(self.source) if isinstance(self.source, (str, os.PathLike)) else None)
        _check_range("volume_db", self.volume_db, VOLUME_DB_RANGE, where)
        _check_range("pan", self.pan, PAN_RANGE, where)
        if self.program is not None and not (isinstance(self.program, (int, np.integer))
                                             and not isinstance(self.program, bool) and 0 <= self.program <= 127):
            raise ConfigError(f"program must be a General MIDI program 0..127 or None, not {self.program!r}", where)
        return self


def _check_range(name: str, value, bounds: tuple[float, float], where=None) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}], not {value!r}", where)
    return float(value)


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law: ``(cos((pan + 1) pi / 4), sin((pan + 1) pi / 4))`` for ``pan`` in [-1, 1].

    Notebook: 10_mixing_and_performance.ipynb

    >>> [round(g, 4) for g in pan_gains(-1.0) + pan_gains(0.0) + pan_gains(1.0)]
    [1.0, 0.0, 0.7071, 0.7071, 0.0, 1.0]
    """
    _check_range("pan", pan, PAN_RANGE)
    angle = (float(pan) + 1.0) * math.pi / 4.0
    left, right = math.cos(angle), math.sin(angle)
    return (0.0 if abs(left) < 1e-12 else left), right     # cos(pi / 2) is 6e-17 in floating point: silence


def db_to_gain(db: float) -> float:
    """Amplitude factor of a level in dB: ``10 ** (db / 20)`` (+6.02 dB doubles).

    >>> round(db_to_gain(6.0206), 3), db_to_gain(0.0)
    (2.0, 1.0)
    """
    return 10.0 ** (float(db) / 20.0)


def rms_db(audio) -> np.ndarray:
    """RMS level of each channel in dB relative to full scale: float64 ``[channels]`` (``-inf`` for silence).

    Notebook: 10_mixing_and_performance.ipynb

    >>> rms_db(np.full((100, 2), 0.5, np.float32)).round(2).tolist()
    [-6.02, -6.02]
    """
    a = np.asarray(audio, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    rms = np.sqrt(np.mean(a ** 2, axis=0)) if len(a) else np.zeros(a.shape[1])
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(rms)


# ----------------------------------------------------------------------------------
# Backing voices from a melody's key
# ----------------------------------------------------------------------------------

def _as_melody(source) -> Melody:
    if isinstance(source, Melody):
        return source
    from labkit.melody import tune_melody

    return tune_melody(source)


def _seconds_per_step(melody: Melody) -> float:
    return 60.0 / (float(melody.qpm) * melody.steps_per_quarter)


def drone(melody, *, octave: int = 3, program: int = 48, fifth: bool = True):
    """A drone under a melody: its estimated tonic (and fifth) held from start to end, as a ``NoteSequence``.

    The key comes from :func:`labkit.melody.estimate_key` (Krumhansl-Kessler); the tonic sits in
    MIDI octave ``octave`` (3: C3 = 48). ``melody``: a Melody or a NoteSequence (its melody is taken).

    Notebook: 10_mixing_and_performance.ipynb

    >>> m = Melody.from_notes([62, 66, 69, 74], [0, 4, 8, 12], [4, 8, 12, 16])
    >>> [n.pitch for n in drone(m).notes]
    [50, 57]
    """
    from note_seq.protobuf import music_pb2

    melody = _as_melody(melody)
    if not len(melody.pitches):
        raise ConfigError("a drone needs a melody with notes", melody.source or None)
    tonic, _ = estimate_key(melody)
    root = 12 * (octave + 1) + int(tonic)
    end = melody.num_steps * _seconds_per_step(melody)
    seq = music_pb2.NoteSequence()
    seq.tempos.add(time=0.0, qpm=float(melody.qpm))
    for pitch in (root, root + 7) if fifth else (root,):
        seq.notes.add(pitch=pitch, velocity=BACKING_VELOCITY, program=program, instrument=0, start_time=0.0,
                      end_time=end)
    seq.total_time = end
    return seq


#: Chords of the simple accompaniment, as semitones above the tonic: I IV V (major), i iv V (minor).
_CHORDS = {"major": ((0, 4, 7), (5, 9, 12), (7, 11, 14)), "minor": ((0, 3, 7), (5, 8, 12), (7, 11, 14))}


def accompaniment(melody, *, octave: int = 3, program: int = 0, beats_per_chord: int | None = None):
    """A simple accompaniment: one chord (I, IV or V of the melody's key) per bar, as a ``NoteSequence``.

    Each bar gets the chord whose pitch classes cover most of the bar's melody notes (weighted by
    their length; ties go to I, then V, then IV), played as a block chord for ``beats_per_chord``
    quarters (default: a whole bar). Key from :func:`labkit.melody.estimate_key`.

    Notebook: 10_mixing_and_performance.ipynb

    >>> m = Melody.from_notes([60, 64, 67, 65, 71, 74], [0, 4, 8, 16, 20, 24], [4, 8, 16, 20, 24, 32])
    >>> sorted({n.pitch % 12 for n in accompaniment(m).notes if n.start_time >= 2.0})  # bar 2: G B D
    [2, 7, 11]
    """
    from note_seq.protobuf import music_pb2

    melody = _as_melody(melody)
    if not len(melody.pitches):
        raise ConfigError("an accompaniment needs a melody with notes", melody.source or None)
    tonic, mode = estimate_key(melody)
    chords = _CHORDS["minor" if mode == "minor" else "major"]
    spq = melody.steps_per_quarter
    bar = max(1, int(round(spq * 4 * melody.numerator / melody.denominator)))
    span = bar if beats_per_chord is None else max(1, int(beats_per_chord) * spq)
    sps = _seconds_per_step(melody)
    pitches, starts, ends = melody.notes()
    seq = music_pb2.NoteSequence()
    seq.tempos.add(time=0.0, qpm=float(melody.qpm))
    base = 12 * (octave + 1) + int(tonic)
    for t0 in range(0, melody.num_steps, span):
        t1 = min(t0 + span, melody.num_steps)
        overlap = np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0, None)
        weight = np.zeros(12)
        np.add.at(weight, (pitches - tonic) % 12, overlap)
        if not weight.any():
            continue
        scores = [sum(weight[i % 12] for i in chord) for chord in chords]
        best = max((0, 2, 1), key=lambda c: scores[c])  # max keeps the first of equals: I, then V, then IV
        for offset in chords[best]:
            seq.notes.add(pitch=base + offset, velocity=BACKING_VELOCITY, program=program, instrument=0,
                          start_time=t0 * sps, end_time=t1 * sps)
    seq.total_time = melody.num_steps * sps
    return seq


# ----------------------------------------------------------------------------------
# Rendering and mixing
# ----------------------------------------------------------------------------------

def read_track(source, name: str = ""):
    """The music of a track source: a ``NoteSequence`` or Melody as it is, a MIDI path read with
    :func:`labkit.midi_io.read_midi` (its errors name the file); a file without notes is refused.

    Notebook: 10_mixing_and_performance.ipynb
    """
    if isinstance(source, (str, os.PathLike)):
        from labkit._common import display_name
        from labkit.errors import NoNotesError
        from labkit.midi_io import read_midi

        sequence = read_midi(source)
        if not sequence.notes:
            raise NoNotesError("holds no notes", display_name(source))
        return sequence
    if isinstance(source, Melody) or (hasattr(source, "notes") and hasattr(source, "total_time")):
        return source
    raise ConfigError(f"a track plays a MIDI file, a NoteSequence or a Melody, not {type(source).__name__}",
                      name or None)


def render_track(track: Track, *, sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont",
                 soundfont=None) -> np.ndarray:
    """One track as stereo float32 ``[num_samples, 2]``: rendered, folded to mono, panned, at its volume.

    Level: the SoundFont's own (not normalised) times :data:`TRACK_GAIN_DB` and ``track.volume_db``.

    Notebook: 10_mixing_and_performance.ipynb
    """
    track = track.validate()
    music = read_track(track.source, track.name)
    stems = render_stems(music, sample_rate=sample_rate, method=method, soundfont=soundfont,
                         program=track.program)
    if not stems:
        return np.zeros((0, 2), np.float32)
    mono = sum(stems.values()).sum(axis=1) / np.float32(math.sqrt(2.0))
    left, right = pan_gains(track.pan)
    gain = db_to_gain(TRACK_GAIN_DB + track.volume_db)
    return np.stack([mono * np.float32(left * gain), mono * np.float32(right * gain)], axis=1).astype(np.float32)


def apply_reverb(audio: np.ndarray, amount: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The room: pedalboard's ``Reverb`` on stereo ``[n, 2]`` audio, with a tail appended; 0 = unchanged.

    ``amount`` in [0, 1] sets the room size (0.3 .. 0.9), the wet level (``0.5 * amount``) and the dry
    level (``1 - 0.3 * amount``); ``REVERB_TAIL_S * amount`` seconds of silence are appended first so
    that the room's decay is heard, not cut. Deterministic (the plugin is reset for every call).

    Notebook: 10_mixing_and_performance.ipynb

    >>> x = np.zeros((1000, 2), np.float32); x[0] = 1.0
    >>> y = apply_reverb(x, 0.5, 22050)
    >>> len(y) > len(x), bool(np.abs(y[5000:]).max() > 0)
    (True, True)
    """
    amount = _check_range("reverb", amount, REVERB_RANGE)
    if amount == 0.0 or not len(audio):
        return np.asarray(audio, np.float32)
    import pedalboard

    tail = int(round(REVERB_TAIL_S * amount * sample_rate))
    padded = np.concatenate([np.asarray(audio, np.float32), np.zeros((tail, 2), np.float32)])
    room = pedalboard.Reverb(room_size=0.3 + 0.6 * amount, damping=0.5, wet_level=0.5 * amount,
                             dry_level=1.0 - 0.3 * amount, width=1.0)
    out = room(np.ascontiguousarray(padded.T), float(sample_rate), reset=True)
    return np.ascontiguousarray(out.T, dtype=np.float32)


@dataclass(frozen=True)
class MixResult:
    """A finished mix: ``audio`` float32 ``[n, 2]``, ``sample_rate``, the ``scaled_db`` applied to keep
    it from clipping (0 when none), and each channel's ``rms_db`` and the ``peak_db`` (dBFS).

    Notebook: 10_mixing_and_performance.ipynb
    """

    audio: np.ndarray
    sample_rate: int
    scaled_db: float
    rms_db: tuple[float, float]
    peak_db: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def mix_tracks(tracks: Sequence[Track], *, reverb: float = 0.0, master_db: float = 0.0,
               sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont", soundfont=None) -> MixResult:
    """Render each track (:func:`render_track`), sum them, add the room, apply the master level.

    Args:
        tracks: one or more :class:`Track`.
        reverb: room amount in :data:`REVERB_RANGE` (:func:`apply_reverb`; 0 = dry).
        master_db: master level in dB, in :data:`VOLUME_DB_RANGE`.
        sample_rate, method, soundfont: as :func:`labkit.audio.render`.

    Returns a :class:`MixResult`. Levels are never normalised; if the peak would pass 0 dBFS the
    whole mix is scaled down to :data:`labkit.audio.PEAK_DBFS` (``scaled_db`` says by how much).
    Raises :class:`ConfigError` for a setting out of range, the readers' errors for a bad file.

    Notebook: 10_mixing_and_performance.ipynb

    >>> m = Melody.from_notes([60, 64, 67], [0, 4, 8], [4, 8, 12])
    >>> r = mix_tracks([Track(m, pan=-1.0)], method="sine")
    >>> r.audio.shape[1], bool(r.rms_db[1] < r.rms_db[0] - 40)
    (2, True)
    """
    tracks = list(tracks)
    if not tracks:
        raise ConfigError("a mix needs at least one track")
    reverb = _check_range("reverb", reverb, REVERB_RANGE)
    master_db = _check_range("master_db", master_db, VOLUME_DB_RANGE)
    for t in tracks:
        if not isinstance(t, Track):
            raise ConfigError(f"mix_tracks takes Track objects, not {type(t).__name__}")
        t.validate()
    rendered = [render_track(t, sample_rate=sample_rate, method=method, soundfont=soundfont) for t in tracks]
    out = np.zeros((max(len(r) for r in rendered), 2), np.float32)
    for r in rendered:
        out[:len(r)] += r
    out = apply_reverb(out, reverb, sample_rate) * np.float32(db_to_gain(master_db))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    scaled_db = 0.0
    if peak > 1.0:
        scaled_db = PEAK_DBFS - 20.0 * math.log10(peak)
        out = out * np.float32(db_to_gain(scaled_db))
        peak = db_to_gain(PEAK_DBFS)
    levels = rms_db(out)
    return MixResult(out.astype(np.float32), int(sample_rate), float(scaled_db), (float(levels[0]), float(levels[1])),
                     20.0 * math.log10(peak) if peak > 0 else -math.inf)


def write_mix(path: str | os.PathLike, result: MixResult) -> Path:
    """Write a :class:`MixResult` as a stereo 16-bit WAV (:func:`labkit.audio.write_wav`, atomic).

    Notebook: 10_mixing_and_performance.ipynb
    """
    if not isinstance(result, MixResult):
        raise ConfigError(f"write_mix takes a MixResult, not {type(result).__name__}")
    return write_wav(path, result.audio, result.sample_rate)


def read_tracks(sources: Sequence, names: Sequence[str] | None = None) -> tuple[list, list[LabkitError]]:
    """Read every source (:func:`read_track`): ``(music, errors)``, one error per unusable source, in order.

    Lets a command report every bad file, one line each, before it gives up.

    Notebook: 10_mixing_and_performance.ipynb
    """
    music, errors = [], []
    for i, source in enumerate(sources):
        try:
            music.append(read_track(source, names[i] if names else ""))
        except LabkitError as exc:
            errors.append(exc)
    return music, errors
