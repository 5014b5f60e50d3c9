"""Tests of labkit.studio (the light show), labkit.app (the studio app's panel, driven headlessly) and
``python -m labkit app``'s errors. The app in a real browser: tests/test_browser.py."""
from __future__ import annotations

import html
import io
import json
import re
import socket
import time
import wave

import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from labkit import studio
from labkit.cli import main
from labkit.errors import ConfigError
from labkit.live import LiveChunk
from labkit.melody import Melody


def _sequence(notes):
    seq = music_pb2.NoteSequence()
    for pitch, start, end, velocity, instrument, program, drum in notes:
        seq.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=velocity, instrument=instrument,
                      program=program, is_drum=drum)
    seq.total_time = max(n[2] for n in notes)
    return seq


# --- the mapping: pitch -> height, velocity -> size, voice -> colour -------------------------------

def test_lights_map_pitch_velocity_and_voice_as_computed_by_hand():
    seq = _sequence([(60, 0.0, 1.0, 127, 0, 0, False), (72, 0.5, 1.5, 0, 0, 0, False),
                     (48, 0.25, 0.75, 64, 1, 33, False), (36, 0.0, 0.1, 100, 9, 0, True)])
    lights = studio.note_lights(seq)
    assert [d["pitch"] for d in lights] == [60, 48, 72]           # by start time; the drum is left out
    by_pitch = {d["pitch"]: d for d in lights}
    # range 48..72 with 2 semitones of room: height (p - 46) / 28
    assert by_pitch[60]["y"] == pytest.approx(14 / 28, abs=1e-4)
    assert by_pitch[72]["y"] == pytest.approx(26 / 28, abs=1e-4)
    assert by_pitch[48]["y"] == pytest.approx(2 / 28, abs=1e-4)
    # radius 3 + 12 * velocity / 127
    assert (by_pitch[60]["r"], by_pitch[72]["r"], by_pitch[48]["r"]) == (15.0, 3.0, round(3 + 12 * 64 / 127, 2))
    # the second instrument is a voice of its own, with its own hue; lightness 35 + 40 * height
    assert by_pitch[60]["voice"] == by_pitch[72]["voice"] == 0 and by_pitch[48]["voice"] == 1
    assert by_pitch[60]["colour"] == f"hsl({studio.VOICE_HUES[0]}, 80%, {35 + 40 * 14 / 28:.0f}%)"
    assert by_pitch[48]["colour"] == f"hsl({studio.VOICE_HUES[1]}, 80%, {35 + 40 * 2 / 28:.0f}%)"
    assert (by_pitch[72]["t0"], by_pitch[72]["t1"]) == (0.5, 1.5)


def test_lights_of_several_voices_share_one_pitch_range():
    melody = Melody.from_notes([67, 69], [0, 4], [4, 8])           # 120 qpm: a step is 0.125 s
    bass = [(43, 0.0, 1.0, 80)]
    lights = studio.note_lights([melody, bass])
    assert [(d["voice"], d["pitch"]) for d in lights] == [(0, 67), (1, 43), (0, 69)]   # by time, then voice
    # one range for both voices, 43..69 with 2 semitones of room: height (p - 41) / 30
    assert [d["y"] for d in lights] == pytest.approx([26 / 30, 2 / 30, 28 / 30], abs=1e-4)
    assert (lights[2]["t0"], lights[2]["t1"]) == (0.5, 1.0)
    assert studio.note_lights([]) == []
    with pytest.raises(ConfigError, match="a note is"):
        studio.note_lights([[(60, 0.0, 1.0)]])


def test_wav_bytes_round_trip():
    audio = np.stack([np.linspace(-1, 1, 101), np.zeros(101)], axis=1).astype(np.float32)
    with wave.open(io.BytesIO(studio.wav_bytes(audio, 8000))) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 101)
        frames = np.frombuffer(w.readframes(101), "<i2").reshape(-1, 2)
    assert frames[0, 0] == -32767 and frames[-1, 0] == 32767 and frames[50, 0] == 0 and not frames[:, 1].any()
    with pytest.raises(ConfigError, match="shape"):
        studio.wav_bytes(np.zeros((4, 3)), 8000)


def test_stage_document_is_self_contained_and_embeds_the_lights_and_audio():
    melody = Melody.from_notes([60, 64, 67], [0, 4, 8], [4, 8, 12])
    audio = np.full(800, 0.25, np.float32)
    doc = studio.stage_document(melody, audio, 8000, title="a <title>")
    assert "http://" not in doc and "https://" not in doc and "<link" not in doc     # no CDN, no network
    assert "a &lt;title&gt;" in doc
    embedded = json.loads(re.search(r"const lights = (\[.*?\]);", doc).group(1))
    expected = studio.note_lights(melody)
    assert [(d["pitch"], d["t0"], d["t1"], d["colour"]) for d in embedded] == \
           [(d["pitch"], d["t0"], d["t1"], d["colour"]) for d in expected]
    uri = re.search(r'src="(data:audio/wav;base64,[^"]+)"', doc).group(1)
    assert uri == studio.wav_data_uri(audio, 8000)
    frame = studio.stage_iframe(melody, audio, 8000)
    assert html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1)) == studio.stage_document(melody, audio, 8000)
    silent = studio.stage_document(melody)                         # no audio: a clock of its own
    assert "<audio" not in silent and "id=\"play\"" in silent


def _chunk(index, notes, audio):
    return LiveChunk(index=index, start_step=32 * index, num_steps=32, start_time=4.0 * index,
                     end_time=4.0 * (index + 1), sequence=None, tokens=np.zeros(32, np.int32), audio=audio,
                     style_index=0.25, candidate_indices=np.zeros(1), target=1.0, compute_seconds=0.1, notes=notes)


def test_live_feed_carries_each_chunk_with_its_notes_audio_and_style_index():
    audio = np.zeros((64000, 2), np.float32)
    feed = studio.live_feed_html("feed-1", 3, "playing", [_chunk(2, ((60, 64, 72),), audio)], sample_rate=16000)
    assert "class='feed-1'" in feed and "data-session='3'" in feed and "data-state='playing'" in feed
    data = json.loads(html.unescape(re.search(r"data-chunk='([^']*)'", feed).group(1)))
    assert (data["index"], data["start"], data["end"], data["style"], data["target"]) == (2, 8.0, 12.0, 0.25, 1.0)
    [light] = data["lights"]                                        # step 64..72 at 0.125 s a step
    assert (light["pitch"], light["t0"], light["t1"]) == (60, 8.0, 9.0)
    wav = re.search(r"data-wav='([^']*)'", feed).group(1)
    assert len(__import__("base64").b64decode(wav)) == 44 + 64000 * 4
    with pytest.raises(ConfigError, match="state"):
        studio.live_feed_html("feed-1", 1, "paused", [], sample_rate=16000)
    with pytest.raises(ConfigError, match="feed name"):
        studio.live_stage_iframe("bad name'")
    assert "const FEED = &quot;feed-1&quot;" in studio.live_stage_iframe("feed-1")


def test_style_axis_markers_sit_where_the_index_says():
    from labkit.app import style_axis_html

    svg = style_axis_html([0.0, 1.0, 0.5], ["a", "b", "c"], axis=("irish", "german"))
    assert re.findall(r'cx="([\d.]+)"', svg) == ["60.0", "460.0", "260.0"]
    assert svg.index("german") < svg.index("irish")                 # 0 (german) left, 1 (irish) right


# --- the app's panel, headless -------------------------------------------------------------------

@pytest.fixture(scope="module")
def models():
    from labkit.models import ModelConfig, make_model
    from labkit.style.model import load_style_model

    return make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 3), load_style_model()


@pytest.fixture
def app(models, tmp_path):
    from labkit.app import StudioApp

    a = StudioApp(tmp_path / "out", model=models[0], style_model=models[1])
    a.sampler.length.value, a.sampler.sound.value = 32, "sine (fast)"
    return a


def test_app_mixer_before_any_melody_says_so_in_red(app):
    app.mix_button.click()
    assert "labkit-error" in app.mix_status.value and "press Generate" in app.mix_status.value


def test_app_generate_then_mix_follows_pan_and_volume(app):
    app.sampler.button.click()
    assert app.sampler.last_error is None and app.last_error is None
    assert "labkit-stage" in app.sampler_stage.value
    index = float(re.search(r"labkit-style-index\">([\d.]+)<", app.sampler_status.value).group(1))
    assert 0.0 <= index <= 1.0
    assert index == pytest.approx(app.style_indices(app.melodies)[0], abs=1e-3)
    app.voices["accompaniment"]["on"].value = False
    app.reverb.value = 0.0
    app.voices["melody"]["pan"].value = -1.0
    left, right = app.mix().rms_db
    assert right < left - 40
    app.voices["melody"]["pan"].value = 1.0
    app.voices["melody"]["volume"].value = -6.0
    app.mix_button.click()
    left2, right2 = app.last_mix[0].rms_db
    assert left2 < right2 - 40 and right2 == pytest.approx(left - 6.0, abs=0.1)
    assert "labkit-mix-wav" in app.mix_link.value and (app.out_dir / "mixer" / "mix.wav").is_file()
    for voice in app.voices.values():
        voice["on"].value = False
    app.mix_button.click()
    assert "every voice is off" in app.mix_status.value


def test_app_live_mode_plays_and_stops_cleanly(app):
    app.live_seed.value = 3
    app.start_button.click()
    deadline = time.monotonic() + 60
    while app.live_chunks < 2 and time.monotonic() < deadline and app.last_error is None:
        time.sleep(0.05)
    assert app.last_error is None and app.live_chunks >= 2
    assert "data-state='playing'" in app.live_feed.value and "data-chunk=" in app.live_feed.value
    app.live_target.value = 0.0                                      # a change while it plays
    app.stop_button.click()
    assert not app._live_thread.is_alive() and not app._engine.running
    assert "stopped" in app.live_status.value and "data-state='stopped'" in app.live_feed.value
    played = app.live_chunks
    with wave.open(str(app.out_dir / "live" / "performance.wav")) as w:
        assert w.getnframes() == played * 4 * app.sample_rate         # 2 bars of 4/4 at 120 qpm a chunk
    time.sleep(0.3)
    assert app.live_chunks == played                                 # nothing more after Stop
    assert app.start_button.disabled is False and app.stop_button.disabled is True


def test_app_page_shows_the_failure_in_the_page(models, tmp_path):
    from labkit.app import app_page

    good = app_page(out_dir=tmp_path, model=models[0], style_model=models[1])
    assert good.labkit_ready.wait(60) and good.labkit_app is not None
    assert good.children == (good.labkit_app.widget,)
    bad = app_page(out_dir=tmp_path, model=models[0], style_model=models[1], axis=("irish", "martian"))
    assert bad.labkit_ready.wait(60) and bad.labkit_app is None
    text = bad.children[0].value
    assert "could not start" in text and "martian" in text


def test_app_notebook_is_package_data_and_calls_the_page():
    from labkit.app import NOTEBOOK

    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    assert len(cells) == 1 and "app_page()" in "".join(cells[0]["source"])


# --- the command's errors: one line, exit status 2 -------------------------------------------------

def test_app_command_bad_port_folder_or_missing_voila_is_one_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--port", "80"])
    assert exit_info.value.code == 2 and "--port" in capsys.readouterr().err
    afile = tmp_path / "x.txt"
    afile.write_text("x")
    assert main(["app", "--out", str(afile)]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file; --out names the folder for the app's files")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port} is in use" in err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "voila" else real(name, *a))
    assert main(["app", "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'labkit[app]'" in capsys.readouterr().err
