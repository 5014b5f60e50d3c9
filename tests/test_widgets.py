"""Tests of labkit.widgets: the sampling studio, driven headlessly by setting widgets and clicking.

Runs under ipywidgets 8 (.venv) and 7.7.1 (.venv-colab, Colab's pins).
"""
from __future__ import annotations

import datetime
import json

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit import midi_io  # noqa: E402
from labkit.encoding import MelodyEncoding  # noqa: E402
from labkit.errors import ConfigError, LabkitError  # noqa: E402
from labkit.melody import Melody, melody_to_sequence  # noqa: E402
from labkit.models import ModelConfig, make_model  # noqa: E402
from labkit.sample import SampleConfig, primer_from_melody, sample  # noqa: E402
from labkit.widgets import (MOTIFS, NO_PRIMER, PATH_PRIMER, UPLOAD_PRIMER, SamplingStudio, StudioResult,  # noqa: E402
                            uploaded_files)

IPYWIDGETS_7 = ipywidgets.__version__.startswith("7.")
TUNE = Melody.from_notes([62, 65, 69, 67, 65, 64], [0, 4, 6, 8, 12, 14], [4, 6, 8, 12, 14, 16])


@pytest.fixture(scope="module")
def model():
    return make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 3)


@pytest.fixture
def studio(model, tmp_path):
    s = SamplingStudio(model, out_dir=tmp_path / "out")
    s.length.value, s.num_melodies.value, s.sound.value = 16, 2, "sine (fast)"
    return s


@pytest.fixture
def tune_midi(tmp_path):
    return midi_io.write_midi(melody_to_sequence(TUNE), tmp_path / "tune.mid")


def html_of(studio) -> str:
    return " ".join(o["data"].get("text/html", "") for o in studio.output.outputs)


def set_upload(upload, name: str, data: bytes) -> None:
    """What the browser does on an upload, in each ipywidgets version's own format."""
    if IPYWIDGETS_7:
        upload.set_trait("value", {name: {"metadata": {"name": name, "type": "audio/midi", "size": len(data)},
                                          "content": data}})
    else:
        upload.value = ({"name": name, "type": "audio/midi", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)


def test_click_makes_melodies_files_and_display(studio):
    studio.num_melodies.value = 3
    studio.button.click()
    assert studio.last_error is None
    result = studio.last_result
    assert isinstance(result, StudioResult)
    assert result.tokens.shape == (3, 1 + 16) and result.tokens.dtype == np.int32
    assert len(result.melodies) == len(result.sequences) == len(result.midi_paths) == 3
    for melody, sequence, path in zip(result.melodies, result.sequences, result.midi_paths):
        assert melody.num_steps == 17
        assert path.exists() and path.parent.parent == studio.out_dir
        assert len(midi_io.read_midi(path).notes) == len(sequence.notes) == len(melody.pitches)
    written = json.loads((result.midi_paths[0].parent / "generation.json").read_text())
    assert written["settings"]["num_samples"] == 3 and written["settings"]["primer_tokens"] == [41]
    assert [r["notes"] for r in result.records] == [len(m.pitches) for m in result.melodies]
    kinds = [set(o["data"]) for o in studio.output.outputs]
    assert any("image/png" in k for k in kinds)
    page = html_of(studio)
    assert page.count("data:audio/midi;base64,") == 3 and "<audio" in page
    assert "3 melodies" in studio.status.value and not studio.button.disabled
    studio.audio_budget_s = 0.0                             # no room for audio: MIDI links only
    studio.button.click()                                   # a second click replaces the output
    assert len(studio.output.outputs) == len(kinds)
    page = html_of(studio)
    assert "<audio" not in page and page.count("no player") == 3 and page.count("data:audio/midi") == 3


def test_same_seed_same_tokens_other_seed_other_tokens(studio):
    studio.seed.value = 11
    studio.button.click()
    first = studio.last_result.tokens
    studio.button.click()
    np.testing.assert_array_equal(studio.last_result.tokens, first)
    studio.seed.value = 12
    studio.button.click()
    assert not np.array_equal(studio.last_result.tokens, first)


def test_widget_values_reach_the_sample_config(studio):
    studio.temperature.value, studio.top_k.value, studio.top_p.value = 0.35, 5, 0.9
    studio.length.value, studio.num_melodies.value, studio.seed.value = 24, 2, 7
    expected = SampleConfig(num_samples=2, length=24, temperature=0.35, top_k=5, top_p=0.9, seed=7)
    assert studio.settings() == expected
    studio.button.click()
    assert studio.last_result.config == expected
    assert studio.last_result.tokens.shape == (2, 25)
    # The studio samples with labkit.sample.sample: the same call gives the same tokens.
    np.testing.assert_array_equal(studio.last_result.tokens, sample(studio.model, expected, [41]))


def test_top_k_1_makes_every_melody_the_greedy_one(studio):
    studio.top_k.value, studio.num_melodies.value = 1, 4
    studio.button.click()
    tokens = studio.last_result.tokens
    assert all(np.array_equal(row, tokens[0]) for row in tokens)
    studio.seed.value = 99                                   # greedy: the seed does not matter
    studio.button.click()
    np.testing.assert_array_equal(studio.last_result.tokens, tokens)


def test_bad_settings_become_messages_not_exceptions(studio, tmp_path):
    studio.primer.value = PATH_PRIMER
    studio.primer_path.value = str(tmp_path / "missing.mid")
    studio.button.click()
    assert studio.last_result is None and isinstance(studio.last_error, LabkitError)
    assert "missing.mid" in studio.status.value and "missing.mid" in html_of(studio)

    studio.primer_path.value = "   "
    studio.button.click()
    assert isinstance(studio.last_error, ConfigError) and "MIDI path" in html_of(studio)

    studio.primer.value = NO_PRIMER
    studio.temperature.min = 0.0
    studio.temperature.value = 0.0
    studio.button.click()
    assert isinstance(studio.last_error, ConfigError) and "temperature" in studio.status.value

    studio.temperature.value = 1.0
    studio.seed.value = 2**70
    studio.button.click()
    assert isinstance(studio.last_error, ConfigError) and "seed" in studio.status.value

    studio.seed.value = -5                                   # would alias seed 2**32 - 5: refused
    studio.button.click()
    assert isinstance(studio.last_error, ConfigError) and "seed" in studio.status.value

    studio.seed.value = 5                                    # fixed: works again, the message is gone
    studio.button.click()
    assert studio.last_error is None and studio.last_result is not None
    assert "Could not generate" not in html_of(studio)


def test_motif_and_user_primers(model, tmp_path, tune_midi):
    given = np.array([43, 0, 45, 0, 47, 1], np.int32)
    studio = SamplingStudio(model, primers={"given tokens": given, "my tune": tune_midi, "melody": TUNE},
                            out_dir=tmp_path / "out")
    studio.length.value, studio.num_melodies.value, studio.sound.value = 8, 2, "sine (fast)"
    motif = next(iter(MOTIFS))
    pitches, starts, ends = MOTIFS[motif]
    expected = {
        motif: primer_from_melody(Melody.from_notes(list(pitches), list(starts), list(ends))),
        "given tokens": given,
        "my tune": primer_from_melody(TUNE, num_steps=studio.primer_steps.value),
        "melody": primer_from_melody(TUNE),
    }
    for label, primer in expected.items():
        studio.primer.value = label
        studio.button.click()
        result = studio.last_result
        assert result is not None, studio.last_error
        np.testing.assert_array_equal(result.primer, primer)
        np.testing.assert_array_equal(result.tokens[:, :len(primer)], np.stack([primer, primer]))
        assert result.tokens.shape == (2, len(primer) + 8)
    studio.primer.value = "my tune"
    studio.primer_steps.value = 5
    assert studio.primer_tokens()[1].tolist() == primer_from_melody(TUNE, num_steps=5).tolist()


def test_midi_path_and_upload_primers(studio, tune_midi):
    studio.primer.value = PATH_PRIMER
    studio.primer_path.value = str(tune_midi)
    studio.primer_steps.value = 64
    studio.button.click()
    np.testing.assert_array_equal(studio.last_result.primer, primer_from_melody(TUNE))

    studio.primer.value = NO_PRIMER
    studio.button.click()
    studio.primer.value = UPLOAD_PRIMER
    studio.button.click()                                   # nothing uploaded yet
    assert studio.last_result is None and "upload" in studio.status.value

    studio.primer.value = NO_PRIMER
    set_upload(studio.upload, "tune.mid", tune_midi.read_bytes())
    assert studio.primer.value == UPLOAD_PRIMER             # an upload selects itself
    studio.button.click()
    np.testing.assert_array_equal(studio.last_result.primer, primer_from_melody(TUNE))

    set_upload(studio.upload, "notes.mid", b"these are not MIDI bytes")
    studio.button.click()
    assert studio.last_result is None and isinstance(studio.last_error, LabkitError)
    assert "notes.mid" in studio.status.value


def test_uploaded_files_reads_both_ipywidgets_formats():
    v7 = {"a.mid": {"metadata": {"name": "a.mid", "size": 4}, "content": b"MThd"}}
    v8 = ({"name": "b.mid", "type": "audio/midi", "size": 4, "content": memoryview(b"MTrk"), "last_modified": 1},)
    assert uploaded_files(v7) == [("a.mid", b"MThd")]
    assert uploaded_files(v8) == [("b.mid", b"MTrk")]
    assert uploaded_files({}) == [] and uploaded_files(()) == []
    with pytest.raises(ConfigError):
        uploaded_files("a.mid")
    with pytest.raises(ConfigError, match="c.mid"):
        uploaded_files(({"name": "c.mid"},))


def test_model_and_encoding_must_agree(tmp_path):
    small = make_model(ModelConfig(vocab_size=14, embed_dim=4, hidden_size=8, num_layers=1), 0)
    with pytest.raises(ConfigError, match="14 tokens"):
        SamplingStudio(small, out_dir=tmp_path)
    with pytest.raises(ConfigError):
        SamplingStudio("not a model object".split(), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="taken"):
        SamplingStudio(small, encoding=MelodyEncoding(60, 71), primers={NO_PRIMER: [2]}, out_dir=tmp_path)
    studio = SamplingStudio(small, encoding=MelodyEncoding(60, 71), out_dir=tmp_path)
    assert studio.top_k.max == 14
    studio.length.value, studio.num_melodies.value, studio.sound.value = 8, 1, "sine (fast)"
    studio.button.click()
    assert studio.last_result.tokens.shape == (1, 9) and studio.last_result.tokens.max() < 14


def test_panel_holds_the_widgets(studio):
    assert isinstance(studio.widget, ipywidgets.VBox)

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    inside = set(map(id, walk(studio.widget)))
    for name in ("temperature", "top_k", "top_p", "length", "num_melodies", "seed", "primer", "primer_path",
                 "upload", "button", "output"):
        assert id(getattr(studio, name)) in inside, name
    assert isinstance(studio.temperature, ipywidgets.FloatSlider) and studio.temperature.min > 0
    assert isinstance(studio.seed, ipywidgets.IntText) and isinstance(studio.top_k, ipywidgets.IntSlider)
