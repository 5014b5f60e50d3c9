"""Tests of labkit.audio: pitch, timing, silence, length, drums, WAV files, determinism, errors."""
from __future__ import annotations

import math
import wave

import note_seq
import numpy as np
import pytest

from labkit import audio
from labkit._common import file_mode
from labkit.errors import ConfigError, LabkitError
from labkit.melody import Melody

SR = audio.DEFAULT_SAMPLE_RATE


def sequence(*notes, total_time=None):
    """A NoteSequence from ``(pitch, start, end[, program[, is_drum[, velocity]]])`` tuples."""
    seq = note_seq.NoteSequence()
    for pitch, start, end, *rest in notes:
        program, is_drum, velocity = (list(rest) + [0, False, 100][len(rest):])[:3]
        seq.notes.add(pitch=pitch, start_time=start, end_time=end, program=program, is_drum=is_drum,
                      velocity=velocity, instrument=9 if is_drum else 0)
    seq.total_time = total_time if total_time is not None else max((n[2] for n in notes), default=0.0)
    return seq


def spectrum(x, sr=SR):
    """Magnitude spectrum of a Hann-windowed segment, zero-padded 8x: (freqs, mags)."""
    n = 8 * len(x)
    return np.fft.rfftfreq(n, 1 / sr), np.abs(np.fft.rfft(x * np.hanning(len(x)), n))


def dominant_frequency(x, sr=SR):
    freqs, mags = spectrum(x, sr)
    return float(freqs[np.argmax(mags)])


def fundamental(x, sr=SR):
    """Fundamental by the harmonic product spectrum (robust when the 2nd harmonic is the loudest)."""
    freqs, mags = spectrum(x, sr)
    m = len(mags) // 3
    product = mags[:m] * mags[::2][:m] * mags[::3][:m]
    lo = int(np.searchsorted(freqs, 50.0))
    return float(freqs[lo + np.argmax(product[lo:m])])


def held_part(a, start=0.1, end=0.6, sr=SR):
    return a[int(start * sr):int(end * sr)]


def midi_hz(pitch):
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test renders from scratch, so determinism is not just the cache handing back one array."""
    audio._CACHE.items.clear()
    audio._CACHE.bytes = 0
    yield


# --- pitch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pitch, hz", [(60, 261.63), (69, 440.0)])
def test_sine_pitch_is_the_dominant_frequency(pitch, hz):
    a = audio.render(sequence((pitch, 0.0, 0.8)), method="sine")
    assert dominant_frequency(held_part(a)) == pytest.approx(hz, rel=0.02)


@pytest.mark.parametrize("pitch, hz", [(60, 261.63), (69, 440.0)])
def test_soundfont_piano_pitch(pitch, hz):
    a = audio.render(sequence((pitch, 0.0, 0.8)))
    # TimGM6mb's piano puts more energy in the 2nd harmonic than in the fundamental at C4,
    # so check the fundamental, and that the loudest peak is one of its harmonics.
    assert fundamental(held_part(a)) == pytest.approx(hz, rel=0.02)
    ratio = dominant_frequency(held_part(a)) / hz
    assert round(ratio) >= 1 and ratio == pytest.approx(round(ratio), rel=0.02)


@pytest.mark.parametrize("pitch", [60, 69, 72])
def test_soundfont_ocarina_dominant_frequency_is_the_pitch(pitch):
    a = audio.render(sequence((pitch, 0.0, 0.8, 79)))  # program 79: ocarina, nearly a sine
    assert dominant_frequency(held_part(a)) == pytest.approx(midi_hz(pitch), rel=0.02)


def test_program_argument_changes_the_instrument():
    seq = sequence((64, 0.0, 0.5))
    assert not np.array_equal(audio.render(seq), audio.render(seq, program=73))


def test_high_notes_are_low_passed_before_resampling():
    # Trumpet (program 56) at C7 reads its 44.1 kHz sample about 4x too fast for an 11025 Hz output:
    # without a low-pass first, about 30% of the energy folds back between the harmonics (aliasing).
    sr, pitch = 11025, 96
    x = held_part(audio.render(sequence((pitch, 0.0, 0.6, 56)), sample_rate=sr), sr=sr)
    freqs, mags = spectrum(x, sr)
    harmonic = freqs / midi_hz(pitch)
    near = np.abs(harmonic - np.round(harmonic)) < 0.03 * np.maximum(np.round(harmonic), 1)
    assert (mags[~near] ** 2).sum() / (mags ** 2).sum() < 0.02


# --- time: silence, length, loops -----------------------------------------------------------------
@pytest.mark.parametrize("method", audio.METHODS)
def test_silence_before_the_note_and_after_its_release(method):
    a = audio.render(sequence((60, 0.5, 0.8), (67, 3.5, 3.8)), method=method)
    assert not a[:int(0.5 * SR) - 1].any()                     # nothing before the first note
    assert np.sqrt(np.mean(held_part(a, 0.55, 0.8) ** 2)) > 0.05  # the note sounds
    quiet_from = 0.8 + (audio.MAX_RELEASE_S if method == "soundfont" else audio.SINE_RELEASE_S)
    assert not a[int(quiet_from * SR) + 1:int(3.5 * SR) - 1].any()  # the release has ended
    assert np.abs(a[int(3.5 * SR) + 50:int(3.8 * SR)]).max() > 0.05  # the second note sounds


def test_sine_length_is_duration_plus_release():
    m = Melody.from_notes([60, 62, 64, 65], [0, 4, 8, 12], [4, 8, 12, 16], qpm=120)  # 4 quarters: 2 s
    a = audio.render(m, method="sine")
    assert len(a) == round(2.0 * SR) + round(audio.SINE_RELEASE_S * SR)


def test_soundfont_length_is_duration_plus_a_bounded_release():
    m = Melody.from_notes([60, 62, 64, 65], [0, 4, 8, 12], [4, 8, 12, 16], qpm=90)  # 4 quarters: 2.667 s
    a = audio.render(m)
    end = 4 * 60 / 90
    assert round(end * SR) < len(a) <= round((end + audio.MAX_RELEASE_S) * SR) + 1
    assert np.abs(a[round(end * SR):]).max() > 0  # a release tail, not a cut


def test_held_note_keeps_sounding_through_the_sample_loop():
    # TimGM6mb's flute sample at C5 lasts about 0.45 s; a 2.5 s note must loop it.
    a = audio.render(sequence((72, 0.0, 2.5, 73)))
    early, late = held_part(a, 0.3, 0.6), held_part(a, 2.1, 2.4)
    rms_early, rms_late = np.sqrt(np.mean(early ** 2)), np.sqrt(np.mean(late ** 2))
    assert rms_late > 0.3 * rms_early
    assert dominant_frequency(late) == pytest.approx(midi_hz(72), rel=0.02)


def test_empty_sequence_is_silence_of_its_length():
    a = audio.render(sequence(total_time=1.0))
    assert a.shape == (SR,) and not a.any()


# --- levels, velocity, stereo -----------------------------------------------------------------------
@pytest.mark.parametrize("gain_db", [0.0, -6.0])
def test_peak_is_normalised_and_never_clips(gain_db):
    seq = sequence((48, 0.0, 0.5), (52, 0.0, 0.5), (55, 0.0, 0.5), (60, 0.0, 0.5), (64, 0.0, 0.5))
    a = audio.render(seq, gain_db=gain_db)
    assert np.abs(a).max() == pytest.approx(10 ** ((audio.PEAK_DBFS + gain_db) / 20), rel=1e-4)
    assert a.dtype == np.float32


def test_velocity_scales_amplitude_as_its_square():
    loud = audio.render_stems(sequence((60, 0.0, 0.3, 0, False, 100)))
    soft = audio.render_stems(sequence((60, 0.0, 0.3, 0, False, 50)))
    (loud,), (soft,) = loud.values(), soft.values()
    assert np.abs(loud).max() / np.abs(soft).max() == pytest.approx(4.0, rel=1e-3)


def test_stems_one_per_part_and_stereo_shapes():
    seq = sequence((60, 0.0, 0.5, 0), (64, 0.0, 0.5, 40), (36, 0.0, 0.1, 0, True))
    stems = audio.render_stems(seq)
    assert set(stems) == {audio.Part(0, 0, False), audio.Part(0, 40, False), audio.Part(9, 0, True)}
    lengths = {s.shape for s in stems.values()}
    assert len(lengths) == 1 and lengths.pop()[1] == 2
    stereo = audio.render_stereo(seq)
    assert stereo.shape == next(iter(stems.values())).shape
    mixed = sum(stems.values())
    assert np.allclose(stereo, mixed * (np.abs(stereo).max() / np.abs(mixed).max()), atol=1e-6)
    mono = audio.render(seq)
    assert mono.shape == stereo.shape[:1]


def test_soundfont_pan_reaches_the_stereo_channels():
    # Every voice of the string ensemble (program 48) at this key is panned hard left, hard right or centre:
    # left and right differ, and each holds sound.
    stereo = audio.render_stereo(sequence((67, 0.0, 0.5, 48)))
    assert not np.array_equal(stereo[:, 0], stereo[:, 1])
    assert np.abs(stereo[:, 0]).max() > 0.1 and np.abs(stereo[:, 1]).max() > 0.1


# --- drums ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", audio.METHODS)
def test_drums_render_with_the_drum_kit(method):
    drums = sequence((36, 0.0, 0.1, 0, True), (38, 0.5, 0.6, 0, True), (42, 1.0, 1.1, 0, True))
    a = audio.render(drums, method=method)
    assert np.isfinite(a).all() and np.abs(a).max() == pytest.approx(10 ** (audio.PEAK_DBFS / 20), rel=1e-4)
    pitched = audio.render(sequence((36, 0.0, 0.1), (38, 0.5, 0.6), (42, 1.0, 1.1)), method=method)
    assert not np.array_equal(a[:len(pitched)], pitched[:len(a)])  # the kit, not a piano


def test_drum_kit_is_bank_128():
    sf = audio.load_soundfont()
    assert audio.DRUM_BANK in {bank for bank, _, _ in sf.presets}
    assert sf.find_preset(128, 0) == (128, 0)
    assert sf.voices(128, 0, 38, 100)  # a snare


# --- determinism ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", audio.METHODS)
def test_same_input_gives_identical_samples(method):
    seq = sequence((60, 0.0, 0.4), (64, 0.3, 0.9, 24), (38, 0.2, 0.3, 0, True))
    first = audio.render(seq, method=method).copy()
    audio._CACHE.items.clear()
    assert np.array_equal(first, audio.render(seq, method=method))


# --- files and notebooks --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2])
def test_write_wav_is_readable_with_the_right_rate_and_frames(tmp_path, channels):
    seq = sequence((60, 0.0, 0.3))
    a = audio.render(seq, sample_rate=16000) if channels == 1 else audio.render_stereo(seq, sample_rate=16000)
    path = audio.write_wav(tmp_path / "sub" / "x.wav", a, sample_rate=16000)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnframes(), w.getnchannels(), w.getsampwidth()) == \
            (16000, len(a), channels, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(len(a), channels)
    assert np.abs(pcm / 32767.0 - a.reshape(len(a), channels)).max() <= 1 / 32767
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temporary file left
    # the mode every writer gives (as open() would), not mkstemp's private 0600
    assert path.stat().st_mode & 0o777 == file_mode()


def test_write_wav_clips_loud_audio_with_a_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="clipped"):
        path = audio.write_wav(tmp_path / "loud.wav", np.array([0.0, 2.0, -3.0]))
    with wave.open(str(path)) as w:
        assert np.frombuffer(w.readframes(3), "<i2").tolist() == [0, 32767, -32767]


def test_play_returns_an_ipython_audio_player():
    pytest.importorskip("IPython")
    from IPython.display import Audio

    player = audio.play(Melody.from_notes([60, 64], [0, 2], [2, 4]), method="sine")
    assert isinstance(player, Audio) and player.data[:4] == b"RIFF"


# --- SoundFont parsing and fallback ----------------------------------------------------------------
def test_soundfont_is_found_and_parsed():
    path = audio.soundfont_path()
    assert path.name == "TimGM6mb.sf2"
    sf = audio.load_soundfont()
    assert sf is audio.load_soundfont(path)  # cached
    assert sf.find_preset(0, 0) == (0, 0) and sf.data.dtype == np.float32
    programs = {p for bank, p, _ in sf.presets if bank == 0}
    assert programs == set(range(128))  # a complete General MIDI set


@pytest.mark.parametrize("content", [b"", b"RIFF\x10\x00\x00\x00WAVEfmt ", "truncated"])
def test_bad_soundfont_raises_soundfont_error_naming_the_file(tmp_path, content):
    if content == "truncated":
        content = audio.soundfont_path().read_bytes()[:5000]
    path = tmp_path / "bad.sf2"
    path.write_bytes(content)
    with pytest.raises(audio.SoundFontError, match="bad.sf2"):
        audio.load_soundfont(path)


def test_unusable_soundfont_falls_back_to_sine_with_a_warning(tmp_path):
    seq = sequence((60, 0.0, 0.3))
    path = tmp_path / "junk.sf2"
    path.write_bytes(b"not a soundfont")
    with pytest.warns(RuntimeWarning, match="junk.sf2.*sine"):
        a = audio.render(seq, soundfont=path)
    assert np.array_equal(a, audio.render(seq, method="sine"))
    with pytest.warns(RuntimeWarning, match="no such SoundFont"):
        audio.render(seq, soundfont=tmp_path / "missing.sf2")


# --- bad parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"sample_rate": 0}, {"sample_rate": -22050}, {"sample_rate": 22050.5}, {"sample_rate": math.nan},
    {"method": "fm"}, {"gain_db": 3.0}, {"gain_db": math.inf}, {"program": 128},
])
def test_bad_parameters_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        audio.render(sequence((60, 0.0, 0.3)), **kwargs)


def test_bad_inputs_raise_labkit_errors(tmp_path):
    with pytest.raises(ConfigError, match="NoteSequence or a labkit.melody.Melody"):
        audio.render([60, 62, 64])
    with pytest.raises(ConfigError, match="at most"):
        audio.render(sequence((60, 0.0, 1e7)))
    with pytest.raises(ConfigError):
        audio.write_wav(tmp_path / "x.wav", np.zeros((10, 3)))
    with pytest.raises(ConfigError):
        audio.write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]))
    with pytest.raises(ConfigError):
        audio.write_wav(tmp_path / "x.wav", np.zeros(10), sample_rate=0)
    assert issubclass(audio.SoundFontError, LabkitError)
