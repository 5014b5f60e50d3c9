"""Hear what the models make: render a sequence or a melody to a waveform.

Two synthesizers, both plain numpy, neither needing a system package:

* ``method="soundfont"`` (the default) plays the General MIDI SoundFont that
  pretty_midi's wheel ships (TimGM6mb.sf2, 6 MB). A SoundFont 2 file is a RIFF
  file holding 16-bit recordings ("samples") and a table of *presets*
  (instruments, chosen by MIDI bank and program; bank 128 is the drum kit).
  Each preset is split into *zones* by key and velocity range; a zone names a
  sample, its root key, tuning, loop points and volume envelope. To play MIDI
  pitch ``p`` we find the zones that cover ``p``, then read the sample faster
  or slower by the ratio

      ratio = 2 ** (cents / 1200) * sample_rate_of_sample / output_rate,
      cents = (p - root_key) * scale_tuning + 100 * coarse_tune + fine_tune + correction,

  loop it while the key is held, and shape it with the volume envelope
  (delay, attack, hold, decay, sustain, release). Read faster than one
  sample per output sample, a recording is low-passed first, so that it
  does not alias.
* ``method="sine"``: a few harmonics of each pitch under a short envelope
  (a noise burst for drums). Needs nothing, sounds like an organ.

What the SoundFont renderer leaves out (a full synthesizer such as FluidSynth
does them): modulators, the low-pass filter, vibrato and modulation LFOs, the
modulation envelope, exclusive classes (a closed hi-hat cutting an open one),
chorus and reverb sends. Pitch bends and control changes are ignored.

The pipeline, with a place for mixing later in the course:

    melody.as_notes -> _place (each note's voices, cached waveforms, by part) -> _mix -> peak normalise

A *part* is one (instrument, program, is_drum) of the sequence;
:func:`render_stems` gives each part as its own stereo track. Per-part gain
and pan, and a simple reverb, belong in :func:`_mix`.

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import struct
import warnings
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from labkit._common import atomic_write
from labkit.errors import ConfigError, LabkitError
from labkit.melody import as_notes

DEFAULT_SAMPLE_RATE = 22050
#: Peak level of a rendered waveform, in dB relative to full scale.
PEAK_DBFS = -1.0
#: A release longer than this (seconds) is cut short: the tail is inaudible by then.
MAX_RELEASE_S = 2.0
#: A voice ends when its release has taken it this far below full level (dB): -60 dB, as in RT60.
SILENCE_DB = 60.0
#: Release time of the sine synthesizer (seconds).
SINE_RELEASE_S = 0.15
#: Longest piece :func:`render` accepts (seconds); guards against absurd note times.
MAX_RENDER_S = 3600.0
METHODS = ("soundfont", "sine")
DRUM_BANK = 128


class SoundFontError(LabkitError):
    """A SoundFont file is missing, is not a SoundFont 2 file, or is corrupt."""


# =====================================================================================
# SoundFont 2: parsing
# =====================================================================================
# Record layouts of the "pdta" sub-chunks (SoundFont 2.04 specification, section 7).
_PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"),
                  ("library", "<u4"), ("genre", "<u4"), ("morphology", "<u4")])        # 38 bytes
_BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])                                    # 4 bytes
_GEN = np.dtype([("oper", "<u2"), ("amount", "<i2")])                                # 4 bytes
_INST = np.dtype([("name", "S20"), ("bag", "<u2")])                                  # 22 bytes
_SHDR = np.dtype([("name", "S20"), ("start", "<u4"), ("end", "<u4"), ("loop_start", "<u4"),
                  ("loop_end", "<u4"), ("rate", "<u4"), ("root", "u1"), ("correction", "i1"),
                  ("link", "<u2"), ("type", "<u2")])                                 # 46 bytes

# Generator numbers used here (specification section 8.1.2).
G_START, G_END, G_LOOP_START, G_LOOP_END, G_START_COARSE = 0, 1, 2, 3, 4
G_END_COARSE, G_PAN = 12, 17
G_DELAY, G_ATTACK, G_HOLD, G_DECAY, G_SUSTAIN, G_RELEASE = 33, 34, 35, 36, 37, 38
G_KEY_TO_HOLD, G_KEY_TO_DECAY = 39, 40
G_INSTRUMENT, G_KEY_RANGE, G_VEL_RANGE, G_LOOP_START_COARSE = 41, 43, 44, 45
G_KEYNUM, G_VELOCITY, G_ATTENUATION, G_LOOP_END_COARSE = 46, 47, 48, 50
G_COARSE_TUNE, G_FINE_TUNE, G_SAMPLE_ID, G_SAMPLE_MODES = 51, 52, 53, 54
G_SCALE_TUNING, G_ROOT_KEY = 56, 58

#: Default value of every generator we read (envelope times in timecents: -12000 = 1 ms).
_DEFAULTS = {G_DELAY: -12000, G_ATTACK: -12000, G_HOLD: -12000, G_DECAY: -12000,
             G_SUSTAIN: 0, G_RELEASE: -12000, G_SCALE_TUNING: 100, G_ROOT_KEY: -1,
             G_KEYNUM: -1, G_VELOCITY: -1}
#: Generators that a preset zone may not set (they only mean something for an instrument zone).
_INSTRUMENT_ONLY = {G_START, G_END, G_LOOP_START, G_LOOP_END, G_START_COARSE, G_END_COARSE,
                    G_LOOP_START_COARSE, G_LOOP_END_COARSE, G_KEYNUM, G_VELOCITY,
                    G_SAMPLE_MODES, 57, G_ROOT_KEY, G_SAMPLE_ID}


@dataclass(frozen=True)
class _Zone:
    """One zone: the key and velocity ranges it covers and its other generators."""

    key_lo: int
    key_hi: int
    vel_lo: int
    vel_hi: int
    gens: tuple  # ((generator, amount), ...), amount a signed 16-bit integer

    def covers(self, key: int, velocity: int) -> bool:
        return self.key_lo <= key <= self.key_hi and self.vel_lo <= velocity <= self.vel_hi


@dataclass(frozen=True)
class Voice:
    """Everything needed to play one sample for one note (all generators resolved).

    Addresses are indices into the SoundFont's sample data; times are seconds;
    ``pitch_cents`` is the shift from the sample's recorded pitch for this key;
    ``attenuation_db`` and ``sustain_db`` are attenuations (positive = quieter);
    ``pan`` is -1 (left) .. 1 (right); ``loop_mode`` 0 none, 1 loop, 3 loop until release.
    """

    start: int
    end: int
    loop_start: int
    loop_end: int
    loop_mode: int
    rate: int
    pitch_cents: float
    attenuation_db: float
    pan: float
    delay: float
    attack: float
    hold: float
    decay: float
    sustain_db: float
    release: float


def _timecents(tc: int) -> float:
    """Seconds from SoundFont timecents: ``2 ** (tc / 1200)`` (-12000 is 1 ms)."""
    return 2.0 ** (max(-12000, min(8000, tc)) / 1200.0)


class SoundFont:
    """A parsed SoundFont 2 file: presets, instruments, sample headers and sample data.

    Build one with :func:`load_soundfont` (cached). ``presets`` lists
    ``(bank, program, name)``; :meth:`voices` finds what to play for a key.

    Notebook: 01_midi_and_notesequences.ipynb
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise SoundFontError(f"cannot read the SoundFont ({exc.strerror or exc})", self.path) from None
        try:
            self._parse(data)
        except SoundFontError:
            raise
        except (ValueError, IndexError, KeyError, struct.error) as exc:
            raise SoundFontError(f"corrupt SoundFont ({exc})", self.path) from None

    # --- RIFF structure -------------------------------------------------------------------
    def _chunks(self, data: bytes, offset: int, end: int):
        while offset + 8 <= end:
            chunk_id = data[offset:offset + 4]
            size = struct.unpack_from("<I", data, offset + 4)[0]
            body = offset + 8
            if body + size > end:
                raise SoundFontError(f"chunk {chunk_id!r} runs past the end of the file (truncated?)",
                                     self.path)
            yield chunk_id, body, size
            offset = body + size + (size & 1)  # chunks are padded to an even length

    def _parse(self, data: bytes) -> None:
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError(f"not a SoundFont 2 file (it starts with {data[:12]!r})", self.path)
        lists = {}
        for chunk_id, body, size in self._chunks(data, 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])):
            if chunk_id == b"LIST":
                lists[data[body:body + 4]] = {cid: data[b:b + s]
                                              for cid, b, s in self._chunks(data, body + 4, body + size)}
        sdta, pdta = lists.get(b"sdta", {}), lists.get(b"pdta", {})
        missing = [name for name, have in (("sdta/smpl", b"smpl" in sdta),) if not have]
        missing += [f"pdta/{k}" for k in ("phdr", "pbag", "pgen", "inst", "ibag", "igen", "shdr")
                    if k.encode() not in pdta]
        if missing:
            raise SoundFontError(f"SoundFont lacks the chunk(s) {', '.join(missing)}", self.path)
        smpl = sdta[b"smpl"]
        #: All samples, float32 in [-1, 1).
        self.data = (np.frombuffer(smpl[:len(smpl) // 2 * 2], "<i2").astype(np.float32) / 32768.0)

        def table(name, dtype):
            raw = pdta[name]
            return np.frombuffer(raw[:len(raw) // dtype.itemsize * dtype.itemsize], dtype)

        phdr, pbag, pgen = table(b"phdr", _PHDR), table(b"pbag", _BAG), table(b"pgen", _GEN)
        inst, ibag, igen = table(b"inst", _INST), table(b"ibag", _BAG), table(b"igen", _GEN)
        self.samples = table(b"shdr", _SHDR)
        if len(phdr) < 2 or len(inst) < 2 or len(self.samples) < 2:
            raise SoundFontError("SoundFont holds no presets, instruments or samples", self.path)
        # Each table ends with a terminal record, so entry i spans [x[i], x[i+1]).
        self.instruments = [self._zones(ibag, igen, int(inst["bag"][i]), int(inst["bag"][i + 1]), G_SAMPLE_ID)
                            for i in range(len(inst) - 1)]
        self._presets = {}
        self._voice_cache: dict[tuple, tuple[Voice, ...]] = {}
        self.presets: list[tuple[int, int, str]] = []
        for i in range(len(phdr) - 1):
            bank, program = int(phdr["bank"][i]), int(phdr["preset"][i])
            name = phdr["name"][i].split(b"\0")[0].decode("latin-1").strip()
            self._presets.setdefault((bank, program),
                                     self._zones(pbag, pgen, int(phdr["bag"][i]), int(phdr["bag"][i + 1]),
                                                 G_INSTRUMENT))
            self.presets.append((bank, program, name))

    @staticmethod
    def _zones(bags, gens, first: int, last: int, terminal: int) -> list[_Zone]:
        """The zones of one preset or instrument, with its global zone folded into each."""
        zones, global_gens = [], {}
        for j in range(first, min(last, len(bags) - 1)):
            g0, g1 = int(bags["gen"][j]), int(bags["gen"][j + 1])
            opers = gens["oper"][g0:g1].tolist()
            amounts = gens["amount"][g0:g1].tolist()
            own = dict(zip(opers, amounts))
            if terminal not in own:
                if j == first:  # a first zone without instrument/sample is the global zone
                    global_gens = own
                continue  # any other such zone is ignored, as the specification says
            merged = {**global_gens, **own}
            key = merged.pop(G_KEY_RANGE, 127 << 8) & 0xFFFF
            vel = merged.pop(G_VEL_RANGE, 127 << 8) & 0xFFFF
            zones.append(_Zone(key & 0xFF, key >> 8, vel & 0xFF, vel >> 8, tuple(sorted(merged.items()))))
        return zones

    # --- lookup ---------------------------------------------------------------------------
    def find_preset(self, bank: int, program: int) -> tuple[int, int] | None:
        """The (bank, program) actually used: exact, else GM fallbacks (bank 0 / drum kit 0)."""
        for candidate in ((bank, program), (DRUM_BANK, 0) if bank == DRUM_BANK else (0, program), (0, 0)):
            if candidate in self._presets:
                return candidate
        return None

    def voices(self, bank: int, program: int, key: int, velocity: int) -> tuple[Voice, ...]:
        """The voices (one per matching sample, two for a stereo pair) for a note (cached).

        Preset-zone generators add to instrument-zone ones (section 9.4 of the
        specification); key and velocity ranges of both levels must cover the note.
        """
        cache_key = (bank, program, key, velocity)
        if cache_key not in self._voice_cache:
            self._voice_cache[cache_key] = self._find_voices(bank, program, key, velocity)
        return self._voice_cache[cache_key]

    def _find_voices(self, bank: int, program: int, key: int, velocity: int) -> tuple[Voice, ...]:
        found = self.find_preset(bank, program)
        if found is None:
            return ()
        out = []
        for pz in self._presets[found]:
            if not pz.covers(key, velocity):
                continue
            pgens = dict(pz.gens)
            index = pgens.pop(G_INSTRUMENT)
            if not 0 <= index < len(self.instruments):
                continue
            for iz in self.instruments[index]:
                if not iz.covers(key, velocity):
                    continue
                gens = {**_DEFAULTS, **dict(iz.gens)}
                for g, amount in pgens.items():
                    if g not in _INSTRUMENT_ONLY:
                        gens[g] = gens.get(g, 0) + amount
                voice = self._voice(gens, key)
                if voice is not None:
                    out.append(voice)
        return tuple(out)

    def _voice(self, g: dict, key: int) -> Voice | None:
        sid = g[G_SAMPLE_ID]
        if not 0 <= sid < len(self.samples) - 1:
            return None
        s = self.samples[sid]
        if int(s["type"]) & 0x8000:  # a ROM sample: its data is not in the file
            return None
        start = int(s["start"]) + g.get(G_START, 0) + 32768 * g.get(G_START_COARSE, 0)
        end = int(s["end"]) + g.get(G_END, 0) + 32768 * g.get(G_END_COARSE, 0)
        loop_start = int(s["loop_start"]) + g.get(G_LOOP_START, 0) + 32768 * g.get(G_LOOP_START_COARSE, 0)
        loop_end = int(s["loop_end"]) + g.get(G_LOOP_END, 0) + 32768 * g.get(G_LOOP_END_COARSE, 0)
        end = min(end, len(self.data) - 1)
        if not (0 <= start < end) or int(s["rate"]) <= 0:
            return None
        loop_mode = g.get(G_SAMPLE_MODES, 0) & 3
        if loop_mode in (1, 3) and not (start <= loop_start < loop_end - 1 and loop_end <= end):
            loop_mode = 0  # broken loop points: play the sample once
        if loop_mode == 2:
            loop_mode = 0
        root = g[G_ROOT_KEY] if g[G_ROOT_KEY] >= 0 else int(s["root"])
        if root > 127:
            root = 60
        played_key = g[G_KEYNUM] if g[G_KEYNUM] >= 0 else key
        cents = ((played_key - root) * g[G_SCALE_TUNING] + 100 * g.get(G_COARSE_TUNE, 0)
                 + g.get(G_FINE_TUNE, 0) + int(s["correction"]))
        return Voice(start=start, end=end, loop_start=loop_start, loop_end=loop_end, loop_mode=loop_mode,
                     rate=int(s["rate"]), pitch_cents=float(cents),
                     attenuation_db=max(0, g.get(G_ATTENUATION, 0)) / 10.0,
                     pan=max(-500, min(500, g.get(G_PAN, 0))) / 500.0,
                     delay=_timecents(g[G_DELAY]), attack=_timecents(g[G_ATTACK]),
                     hold=_timecents(g[G_HOLD] + (60 - key) * g.get(G_KEY_TO_HOLD, 0)),
                     decay=_timecents(g[G_DECAY] + (60 - key) * g.get(G_KEY_TO_DECAY, 0)),
                     sustain_db=min(max(g[G_SUSTAIN], 0), 1440) / 10.0,
                     release=min(_timecents(g[G_RELEASE]), MAX_RELEASE_S))

    def __repr__(self) -> str:
        return f"SoundFont({self.path.name!r}, {len(self.presets)} presets, {len(self.data) / 1e6:.1f}M samples)"


def soundfont_path() -> Path:
    """Where the default SoundFont is: pretty_midi's TimGM6mb.sf2 (General MIDI, 6 MB).

    Found without importing pretty_midi. Raises :class:`SoundFontError` when it is not installed.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> soundfont_path().name
    'TimGM6mb.sf2'
    """
    spec = importlib.util.find_spec("pretty_midi")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "TimGM6mb.sf2"
            if path.is_file():
                return path
    raise SoundFontError("pretty_midi's TimGM6mb.sf2 was not found; install pretty_midi "
                         "(note-seq depends on it) or pass soundfont='path/to/file.sf2'")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int) -> SoundFont:
    return SoundFont(path)


def load_soundfont(path: str | os.PathLike | None = None) -> SoundFont:
    """Parse a SoundFont 2 file (default: :func:`soundfont_path`); cached while the file is unchanged.

    Raises :class:`SoundFontError` (naming the file) when it is missing or not a SoundFont.
    Parsing TimGM6mb takes about 0.1 s.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> sf = load_soundfont()
    >>> (0, 0) in [(b, p) for b, p, _ in sf.presets]
    True
    """
    path = Path(path) if path is not None else soundfont_path()
    try:
        st = path.stat()
    except OSError:
        raise SoundFontError("no such SoundFont file", path) from None
    return _load_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


# =====================================================================================
# Voices: one note of one sample, as a mono waveform
# =====================================================================================
class _WaveCache:
    """A least-recently-used cache of rendered voices, bounded in bytes."""

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes, self.bytes, self.items = max_bytes, 0, OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        value.flags.writeable = False
        self.items[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.max_bytes and len(self.items) > 1:
            self.bytes -= self.items.popitem(last=False)[1].nbytes
        return value


_CACHE = _WaveCache()


def _envelope(n_on: int, sr: int, delay: float, attack: float, hold: float, decay: float,
              sustain_db: float, release: float) -> np.ndarray:
    """SoundFont volume envelope, float32 ``[n_on + release samples]``.

    Delay (silent), attack (linear rise to 1), hold (1), decay (falls linearly in
    dB towards ``-sustain_db`` at 100 dB per ``decay`` seconds), sustain; at
    sample ``n_on`` (the note-off) the release falls 100 dB per ``release`` seconds
    until it is :data:`SILENCE_DB` below full level.
    """
    t = np.arange(n_on, dtype=np.float64) / sr
    a = np.clip((t - delay) / max(attack, 1e-6), 0.0, 1.0)            # delay + attack
    t_decay = t - (delay + attack + hold)
    db = np.minimum(np.clip(t_decay, 0.0, None) * (100.0 / max(decay, 1e-6)), sustain_db)
    on = a * 10.0 ** (-db / 20.0)
    level = float(on[-1]) if n_on else 0.0
    # The voice stops once the release has brought it SILENCE_DB below full level.
    level_db = -20.0 * math.log10(max(level, 1e-12))
    n_rel = max(1, int(math.ceil(release * max(0.0, SILENCE_DB - level_db) / 100.0 * sr)))
    tr = np.arange(1, n_rel + 1, dtype=np.float64) / sr
    off = level * 10.0 ** (-(100.0 / max(release, 1e-6)) * tr / 20.0)
    return np.concatenate([on, off]).astype(np.float32)


def _sample_positions(v: Voice, ratio: float, n_on: int, n: int) -> np.ndarray:
    """Read positions (float sample indices) for ``n`` output samples, looping as the voice says."""
    pos = v.start + np.arange(n, dtype=np.float64) * ratio
    if v.loop_mode in (1, 3):
        length = v.loop_end - v.loop_start
        looping = slice(None) if v.loop_mode == 1 else slice(0, n_on)
        p = pos[looping]
        past = p >= v.loop_end
        p[past] = v.loop_start + np.mod(p[past] - v.loop_start, length)
        pos[looping] = p
        if v.loop_mode == 3 and n > n_on:  # after the release, run on through the loop to the end
            at_release = pos[n_on - 1] + ratio if n_on else float(v.start)
            pos[n_on:] = at_release + np.arange(n - n_on, dtype=np.float64) * ratio
    return pos


def _source(sf: SoundFont, v: Voice, ratio: float) -> np.ndarray:
    """The data of a voice's sample, ``sf.data[v.start : v.end + 1]``, ready to be read at ``ratio``.

    Reading faster than one source sample per output sample (``ratio > 1``) folds
    everything above the output's Nyquist frequency back down as inharmonic noise
    (aliasing). So the data is first low-passed below ``0.5 / ratio`` cycles per
    sample with a 63-tap windowed-sinc filter (Blackman window). Cached; the ratio
    is rounded up to a semitone so neighbouring pitches share one filtered copy.
    """
    region = sf.data[v.start:min(v.end + 1, len(sf.data))]
    if ratio <= 1.0 or len(region) < 64:
        return region
    step = math.ceil(12.0 * math.log2(ratio) - 1e-9)  # semitones, rounded up: never under-filter

    def make():
        cutoff = 0.45 / 2.0 ** (step / 12.0)  # cycles per source sample, a little under Nyquist
        taps = np.arange(-31, 32)
        h = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.blackman(len(taps))
        return np.convolve(region, (h / h.sum()).astype(np.float32), mode="same").astype(np.float32)

    return _CACHE.get(("lowpass", id(sf), v.start, v.end, step), make)


def _soundfont_voice(sf: SoundFont, v: Voice, n_on: int, sr: int) -> np.ndarray:
    """One voice, float32 ``[length]``, at unit velocity and before pan (cached)."""

    def make():
        ratio = 2.0 ** (v.pitch_cents / 1200.0) * v.rate / sr
        env = _envelope(n_on, sr, v.delay, v.attack, v.hold, v.decay, v.sustain_db, v.release)
        pos = _sample_positions(v, ratio, n_on, len(env))
        if v.loop_mode != 1:  # a sample that is not looped ends where its data ends
            stop = int(np.searchsorted(pos, v.end - 1, side="left")) if v.loop_mode == 0 else \
                n_on + int(np.searchsorted(pos[n_on:], v.end - 1, side="left"))
            pos, env = pos[:stop], env[:stop]
        src = _source(sf, v, ratio)  # the sample's data from v.start on, low-passed when ratio > 1
        i = pos.astype(np.int64) - v.start
        frac = (pos - v.start - i).astype(np.float32)
        x0 = src[i]
        x1 = src[np.minimum(i + 1, len(src) - 1)]
        out = (x0 + frac * (x1 - x0)) * env
        return out * np.float32(10.0 ** (-v.attenuation_db / 20.0))

    return _CACHE.get(("sf2", id(sf), v, n_on, sr), make)


_SINE_HARMONICS = (1.0, 0.35, 0.18, 0.08)


def _sine_voice(pitch: int, is_drum: bool, n_on: int, sr: int) -> np.ndarray:
    """A sine-synth voice, float32 ``[n_on + release]``: harmonics of the pitch, or a noise burst for drums."""

    def make():
        n_rel = int(round(SINE_RELEASE_S * sr))
        n = n_on + n_rel
        t = np.arange(n, dtype=np.float64) / sr
        if is_drum:  # deterministic noise (seeded by the pitch) under a fast decay
            tone = np.random.default_rng(pitch).uniform(-1.0, 1.0, n)
            env = np.exp(-t / 0.06)
        else:
            f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
            tone = sum(w * np.sin(2 * np.pi * k * f0 * t)
                       for k, w in enumerate(_SINE_HARMONICS, start=1) if k * f0 < sr / 2)
            tone = tone if isinstance(tone, np.ndarray) else np.zeros(n)
            env = np.clip(t / 0.005, 0.0, 1.0) * (0.6 + 0.4 * np.exp(-t / 0.15))  # attack, decay to 0.6
        ramp = np.ones(n)
        ramp[n_on:] = np.linspace(1.0, 0.0, n_rel, endpoint=False) if n_rel else ramp[n_on:]
        return (tone * env * ramp).astype(np.float32)

    return _CACHE.get(("sine", pitch, bool(is_drum), n_on, sr), make)


# =====================================================================================
# Stems, mix, render
# =====================================================================================
class Part(NamedTuple):
    """One part of a piece: its track (``instrument``), General MIDI ``program`` and ``is_drum``."""

    instrument: int
    program: int
    is_drum: bool


def _check(sample_rate, method, gain_db=0.0) -> int:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(map(repr, METHODS))}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float, np.floating)) \
            or not math.isfinite(sample_rate) or int(sample_rate) != sample_rate or not 1000 <= sample_rate <= 384000:
        raise ConfigError(f"sample_rate must be a whole number of Hz from 1000 to 384000, not {sample_rate!r}")
    if not (isinstance(gain_db, (int, float, np.integer, np.floating)) and math.isfinite(gain_db) and gain_db <= 0):
        raise ConfigError(f"gain_db must be a number <= 0 (the peak is set to {PEAK_DBFS} dBFS; more would clip), "
                          f"not {gain_db!r}")
    return int(sample_rate)


def _soundfont_or_none(soundfont) -> SoundFont | None:
    if isinstance(soundfont, SoundFont):
        return soundfont
    try:
        return load_soundfont(soundfont)
    except SoundFontError as exc:
        warnings.warn(f"{exc}; rendering with method='sine' instead", RuntimeWarning, stacklevel=5)
        return None


def _pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan: -1 left, 0 centre (both -3 dB), 1 right."""
    angle = (pan + 1.0) * math.pi / 4.0
    return math.cos(angle), math.sin(angle)


class _Placed(NamedTuple):
    """One voice placed in time: its waveform from sample ``onset`` on, with its gains."""

    onset: int
    wave: np.ndarray  # float32 [length], read-only (cached)
    left: float
    right: float
    amp: float


def _place(sequence, sr: int, method: str, soundfont, program) -> tuple[dict[Part, list[_Placed]], int]:
    """Every voice of every note, grouped by part, and the length of the result in samples."""
    notes = as_notes(sequence, program=program)
    if len(notes.pitch) and notes.end.max() > MAX_RENDER_S:
        raise ConfigError(f"the piece lasts {notes.end.max():.0f} s; render() takes at most {MAX_RENDER_S:.0f} s")
    sf = _soundfont_or_none(soundfont) if method == "soundfont" else None
    onsets = np.round(notes.start * sr).astype(np.int64)
    lengths = np.maximum(np.round(notes.end * sr).astype(np.int64) - onsets, 1)
    placed: dict[Part, list[_Placed]] = {}
    for k in range(len(notes.pitch)):
        pitch, vel, drum = int(notes.pitch[k]), int(notes.velocity[k]), bool(notes.is_drum[k])
        part = Part(int(notes.instrument[k]), int(notes.program[k]), drum)
        amp = (vel / 127.0) ** 2  # the SoundFont default curve: 40 dB over the velocity range
        items = placed.setdefault(part, [])
        onset, n_on = int(onsets[k]), int(lengths[k])
        if sf is None:
            items.append(_Placed(onset, _sine_voice(pitch, drum, n_on, sr), *_pan_gains(0.0), amp))
            continue
        bank = DRUM_BANK if drum else 0
        for v in sf.voices(bank, part.program, pitch, vel):
            items.append(_Placed(onset, _soundfont_voice(sf, v, n_on, sr), *_pan_gains(v.pan), amp))
    n = int(np.round(notes.end.max() * sr)) if len(notes.pitch) else \
        int(round(min(max(getattr(sequence, "total_time", 0.0) or 0.0, 0.0), MAX_RENDER_S) * sr))
    n = max([n] + [x.onset + len(x.wave) for items in placed.values() for x in items])
    return placed, n


def _add(out: np.ndarray, items: list[_Placed], gain: float = 1.0) -> np.ndarray:
    """Add placed voices into a stereo buffer ``out`` ``[n, 2]``, in place; returns ``out``."""
    for x in items:
        segment = out[x.onset:x.onset + len(x.wave)]
        segment[:, 0] += x.wave * np.float32(x.left * x.amp * gain)
        segment[:, 1] += x.wave * np.float32(x.right * x.amp * gain)
    return out


def render_stems(sequence, *, sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont",
                 soundfont: str | os.PathLike | SoundFont | None = None,
                 program: int | None = None) -> dict[Part, np.ndarray]:
    """Render each part of a sequence or melody on its own: ``{Part: float32 [num_samples, 2]}``.

    All stems have the same length and are not normalised (a sum of voices at
    their SoundFont level times ``(velocity / 127) ** 2``), so they can be mixed
    with per-part gain and pan; their sum is what :func:`render_stereo` normalises.
    Parameters as in :func:`render`. Memory: one stereo buffer per part.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> from labkit.melody import Melody
    >>> stems = render_stems(Melody.from_notes([60], [0], [4]), method="sine")
    >>> [(p.program, s.shape[1]) for p, s in stems.items()]
    [(0, 2)]
    """
    sr = _check(sample_rate, method)
    placed, n = _place(sequence, sr, method, soundfont, program)
    return {part: _add(np.zeros((n, 2), np.float32), items) for part, items in placed.items()}


def _mix(placed: dict[Part, list[_Placed]], n: int) -> np.ndarray:
    """Mix all parts into one stereo buffer ``[n, 2]`` (one buffer, however many parts).

    Extension point for the mixing lessons: a per-part gain (the ``gain`` of
    :func:`_add`) and pan (scaling each voice's left/right gains) go here, part
    by part; a simple reverb would run on ``out`` (or on a send) before returning.
    """
    out = np.zeros((n, 2), np.float32)
    for items in placed.values():
        _add(out, items)
    return out


def _normalise(audio: np.ndarray, gain_db: float) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * np.float32(10.0 ** ((PEAK_DBFS + gain_db) / 20.0) / peak)
    return audio.astype(np.float32)


def render_stereo(sequence, *, sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont",
                  soundfont: str | os.PathLike | SoundFont | None = None, gain_db: float = 0.0,
                  program: int | None = None) -> np.ndarray:
    """Render to stereo, float32 ``[num_samples, 2]`` (left, right), pan from the SoundFont.

    Same parameters and normalisation as :func:`render`.

    Notebook: 01_midi_and_notesequences.ipynb
    """
    sr = _check(sample_rate, method, gain_db)
    placed, n = _place(sequence, sr, method, soundfont, program)
    return _normalise(_mix(placed, n), gain_db)


def render(sequence, *, sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont",
           soundfont: str | os.PathLike | SoundFont | None = None, gain_db: float = 0.0,
           program: int | None = None) -> np.ndarray:
    """Render a ``NoteSequence`` or :class:`~labkit.melody.Melody` to mono audio, float32 ``[num_samples]``.

    Args:
        sequence: a ``note_seq.NoteSequence`` (drums: ``is_drum`` notes use the
            SoundFont's drum kit, bank 128) or a ``Melody`` (steps -> seconds via its qpm).
        sample_rate: output rate in Hz (1000..384000).
        method: ``"soundfont"`` (General MIDI sample playback) or ``"sine"``. When the
            SoundFont cannot be found or parsed, a ``RuntimeWarning`` says so and
            ``"sine"`` is used instead.
        soundfont: path of a ``.sf2`` file or a loaded :class:`SoundFont`; default TimGM6mb.
        gain_db: level of the peak relative to -1 dBFS; 0 or less (so it never clips).
        program: General MIDI program (0..127) for every pitched note, e.g. 73 flute.

    The length is the last note's end plus the release tail (at most
    :data:`MAX_RELEASE_S` for the SoundFont, :data:`SINE_RELEASE_S` for sine).
    The peak is normalised to ``-1 dBFS + gain_db``; silence stays zeros.
    The same input always gives the same samples. Raises :class:`~labkit.errors.ConfigError`
    on bad parameters.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> from labkit.melody import Melody
    >>> audio = render(Melody.from_notes([60, 64, 67], [0, 4, 8], [4, 8, 12]), method="sine")
    >>> audio.dtype.name, audio.ndim, float(abs(audio).max()) <= 1.0
    ('float32', 1, True)
    """
    stereo = render_stereo(sequence, sample_rate=sample_rate, method=method, soundfont=soundfont,
                           gain_db=gain_db, program=program)
    return _normalise(stereo.mean(axis=1), gain_db)


# =====================================================================================
# Files and notebooks
# =====================================================================================
def _as_audio(audio) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 2)):
        raise ConfigError(f"audio must be mono [n] or stereo [n, 2], not shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError("audio holds NaN or infinite values")
    return a


def write_wav(path: str | os.PathLike, audio, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write mono ``[n]`` or stereo ``[n, 2]`` float audio in [-1, 1] as a 16-bit PCM WAV, atomically.

    Values beyond [-1, 1] are clipped, with a warning. Returns the path.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> import tempfile, os
    >>> p = write_wav(os.path.join(tempfile.mkdtemp(), "a.wav"), np.zeros(100))
    >>> p.name
    'a.wav'
    """
    sr = _check(sample_rate, "sine")
    a = _as_audio(audio)
    if a.size and float(np.max(np.abs(a))) > 1.0:
        warnings.warn(f"{os.fspath(path)}: audio peaks above 1.0 and is clipped", RuntimeWarning, stacklevel=2)
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")
    channels = 1 if a.ndim == 1 else 2

    def write(handle) -> None:
        with wave.open(handle, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes(pcm.tobytes())

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise ConfigError(f"cannot write here ({exc.strerror or exc})", path) from None


def play(sequence_or_audio, sample_rate: int = DEFAULT_SAMPLE_RATE, **render_kwargs):
    """A notebook audio player (``IPython.display.Audio``) for a sequence, a melody or a waveform.

    A sequence or melody is rendered with :func:`render` (``render_kwargs`` go
    there: ``method``, ``soundfont``, ``gain_db``, ``program``); a waveform must be
    mono ``[n]`` or stereo ``[n, 2]`` in [-1, 1].

    Notebook: 01_midi_and_notesequences.ipynb

    Example (in a notebook cell): ``play(melody, method="sine")``
    """
    try:
        from IPython.display import Audio
    except ImportError:
        raise ConfigError("play() needs IPython (run it in Jupyter); use write_wav() instead") from None
    if isinstance(sequence_or_audio, (np.ndarray, list, tuple)):
        _check(sample_rate, "sine")
        a = _as_audio(sequence_or_audio)
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        if peak > 1.0:
            a = a / peak
    else:
        a = render(sequence_or_audio, sample_rate=sample_rate, **render_kwargs)
    return Audio(a.T if a.ndim == 2 else a, rate=int(sample_rate), normalize=False)
