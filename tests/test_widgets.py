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
from labkit.conditioned import DEFAULT_GUIDANCE, guidance_defaults  # noqa: E402
from labkit.errors import ConfigError, LabkitError  # noqa: E402
from labkit.melody import Melody, melody_to_sequence  # noqa: E402
from labkit.models import ModelConfig, make_model  # noqa: E402
from labkit.sample import SampleConfig, primer_from_melody, sample  # noqa: E402
from labkit.widgets import (ANY_STYLE, KEYS, MOTIFS, NO_PRIMER, PATH_PRIMER, UPLOAD_PRIMER, SamplingStudio,  # noqa: E402
                            StudioResult, uploaded_files)

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
                 "upload", "button", "output", "style", "meter", "key", "max_steps"):
        assert id(getattr(studio, name)) in inside, name
    assert isinstance(studio.temperature, ipywidgets.FloatSlider) and studio.temperature.min > 0
    assert isinstance(studio.seed, ipywidgets.IntText) and isinstance(studio.top_k, ipywidgets.IntSlider)


# --- to order: style, metre and key (the conditioned model) -----------------------------------------

TINY_TYPICAL = {"irish": {"meter": "6/8", "key": "D major"}, "german": {"meter": "3/4", "key": "F major"}}


@pytest.fixture(scope="module")
def conditioned_checkpoint(tmp_path_factory):
    """A tiny conditioned model (two styles, three metres) saved as a checkpoint, as the shipped one is."""
    from labkit.checkpoint import save_model
    from labkit.conditioned import ConditionedEncoding

    enc = ConditionedEncoding(styles=("irish", "german"), meters=("3/4", "4/4", "6/8"))
    config = ModelConfig(vocab_size=enc.vocab_size, embed_dim=8, hidden_size=16, num_layers=1)
    path = tmp_path_factory.mktemp("cond") / "tiny_conditioned.npz"
    save_model(path, make_model(config, 5), config, {"conditioning": enc.to_dict(), "typical": TINY_TYPICAL})
    return path


@pytest.fixture
def ordered(model, conditioned_checkpoint, tmp_path):
    s = SamplingStudio(model, out_dir=tmp_path / "out", conditioned=conditioned_checkpoint)
    s.num_melodies.value, s.sound.value, s.max_steps.value = 2, "sine (fast)", 48
    return s


def test_to_order_controls_offer_the_shipped_models_styles_metres_and_keys(studio):
    from labkit.conditioned import shipped_conditioned_path
    from labkit.checkpoint import read_meta

    meta = read_meta(shipped_conditioned_path())
    assert studio.style.options == (ANY_STYLE, *meta["conditioning"]["styles"])
    assert studio.meter.options == tuple(meta["conditioning"]["meters"])
    assert studio.key.options == KEYS and len(KEYS) == 24 and KEYS[:3] == ("C major", "C# major", "D major")
    assert KEYS[12] == "C minor" and KEYS[-1] == "B minor"
    assert studio.style.value == ANY_STYLE                   # the default: today's studio
    assert studio.meter.disabled and studio.key.disabled and studio.max_steps.disabled and studio.guidance.disabled
    assert not studio.length.disabled and not studio.primer.disabled
    for style, typical in meta["typical"].items():          # a style chosen: its typical metre and key
        studio.style.value = style
        assert (studio.meter.value, studio.key.value) == (typical["meter"], typical["key"]), style
    assert not studio.meter.disabled and studio.length.disabled and studio.primer.disabled
    assert studio.order() == {"style": style, "meter": typical["meter"], "key": typical["key"],
                              "guidance": DEFAULT_GUIDANCE}
    assert not studio.guidance.disabled
    assert studio.settings().length == studio.max_steps.value == 1024
    studio.style.value = ANY_STYLE
    assert studio.order() is None and studio.meter.disabled and not studio.primer.disabled
    assert studio.settings().length == studio.length.value == 16


def test_to_order_writes_the_chosen_time_and_key_signatures(ordered):
    from labkit.conditioned import load_conditioned_model, sample_to_order
    from note_seq import music_pb2

    assert ordered.style.options == (ANY_STYLE, "irish", "german")
    assert ordered.meter.options == ("3/4", "4/4", "6/8")
    ordered.style.value = "german"
    assert (ordered.meter.value, ordered.key.value) == ("3/4", "F major")
    ordered.meter.value, ordered.key.value = "6/8", "F# minor"
    ordered.temperature.value, ordered.seed.value = 0.8, 21
    ordered.button.click()
    assert ordered.last_error is None, ordered.last_error
    result = ordered.last_result
    assert result.order == {"style": "german", "meter": "6/8", "key": "F# minor", "max_steps": 48,
                            "guidance": DEFAULT_GUIDANCE}
    assert len(result.melodies) == len(result.midi_paths) == len(result.ended) == 2
    for melody, path in zip(result.melodies, result.midi_paths):
        sequence = midi_io.read_midi(path)
        assert [(t.numerator, t.denominator) for t in sequence.time_signatures] == [(6, 8)]
        assert [(k.key, k.mode) for k in sequence.key_signatures] == [(6, music_pb2.NoteSequence.KeySignature.MINOR)]
        assert len(sequence.notes) == len(melody.pitches)
        assert 0 < melody.num_steps <= 48
    written = json.loads((result.midi_paths[0].parent / "generation.json").read_text())["settings"]
    assert (written["style"], written["meter"], written["key"], written["seed"]) == ("german", "6/8", "F# minor", 21)
    assert written["guidance"] == DEFAULT_GUIDANCE and f"guidance {DEFAULT_GUIDANCE:g}" in ordered.status.value
    assert "german tunes in 6/8, F# minor" in ordered.status.value and "tune 1" not in ordered.status.value
    assert "<audio" in html_of(ordered) and html_of(ordered).count("data:audio/midi") == 2
    # the studio's knobs reach sample_to_order: the same call gives the same tunes
    model, _, enc, _ = load_conditioned_model(ordered._conditioned_path)
    direct = sample_to_order(model, enc, style="german", meter="6/8", key="F#m", num=2, max_steps=48,
                             temperature=0.8, seed=21)
    for (melody, info), row, mine in zip(direct, result.tokens, result.melodies):
        np.testing.assert_array_equal(row[:len(info["tokens"])], info["tokens"])
        np.testing.assert_array_equal(mine.events, melody.events)
    # same seed: the same tunes and the same files; another seed: other tunes
    first, first_bytes = result.tokens, result.midi_paths[0].read_bytes()
    ordered.button.click()
    np.testing.assert_array_equal(ordered.last_result.tokens, first)
    assert ordered.last_result.midi_paths[0].read_bytes() == first_bytes
    ordered.seed.value = 22
    ordered.button.click()
    assert not np.array_equal(ordered.last_result.tokens, first)
    # the guidance slider reaches sample_to_order too
    ordered.seed.value, ordered.guidance.value = 21, 0.0
    ordered.button.click()
    plain = sample_to_order(model, enc, style="german", meter="6/8", key="F#m", num=2, max_steps=48,
                            temperature=0.8, seed=21, guidance=0.0)
    assert ordered.last_result.order["guidance"] == 0.0 and "_g0.00_" in str(ordered.last_result.midi_paths[0])
    # generation.json says how the tunes were sampled, guidance's other settings included
    recorded = json.loads((ordered.last_result.midi_paths[0].parent / "generation.json").read_text())["settings"]
    assert recorded["guidance"] == 0.0 and {k: recorded[k] for k in guidance_defaults()} == guidance_defaults()
    for (melody, info), row in zip(plain, ordered.last_result.tokens):
        np.testing.assert_array_equal(row[:len(info["tokens"])], info["tokens"])


def test_any_style_keeps_the_unconditioned_path(ordered, model):
    ordered.style.value = "irish"
    ordered.style.value = ANY_STYLE
    ordered.length.value, ordered.seed.value, ordered.temperature.value = 24, 4, 0.9
    ordered.button.click()
    result = ordered.last_result
    assert result.order is None and result.ended == [] and result.tokens.shape == (2, 25)
    expected = SampleConfig(num_samples=2, length=24, temperature=0.9, seed=4)
    np.testing.assert_array_equal(result.tokens, sample(model, expected, [41]))
    sequence = midi_io.read_midi(result.midi_paths[0])
    assert [(t.numerator, t.denominator) for t in sequence.time_signatures] in ([], [(4, 4)])
    assert ordered._conditioned_model is None               # never loaded: the old path does not need it


def test_to_order_bad_choices_become_messages(ordered, model, tmp_path):
    from labkit.checkpoint import save_model
    from labkit.errors import CheckpointError

    ordered.style.value = "irish"
    with pytest.raises(ConfigError, match="primer"):
        ordered.generate(primer=np.array([41], np.int32))
    ordered.temperature.min = 0.0
    ordered.temperature.value = 0.0
    ordered.button.click()
    assert ordered.last_result is None and "temperature" in ordered.status.value
    # no conditioned model: only "any", and the studio works as before
    bare = SamplingStudio(model, out_dir=tmp_path / "bare", conditioned=None)
    assert bare.style.options == (ANY_STYLE,) and bare.style.disabled
    # an unconditioned checkpoint is refused, naming the file
    plain = save_model(tmp_path / "plain.npz", model, ModelConfig(embed_dim=8, hidden_size=16, num_layers=1))
    with pytest.raises(CheckpointError, match="plain.npz"):
        SamplingStudio(model, out_dir=tmp_path, conditioned=plain)


def test_to_order_with_the_shipped_model(studio):
    from note_seq import music_pb2

    studio.style.value = "irish"
    studio.meter.value, studio.key.value = "6/8", "D major"
    studio.num_melodies.value, studio.max_steps.value, studio.seed.value = 1, 96, 3
    studio.button.click()
    assert studio.last_error is None, studio.last_error
    sequence = midi_io.read_midi(studio.last_result.midi_paths[0])
    assert [(t.numerator, t.denominator) for t in sequence.time_signatures] == [(6, 8)]
    assert [(k.key, k.mode) for k in sequence.key_signatures] == [(2, music_pb2.NoteSequence.KeySignature.MAJOR)]
    assert len(sequence.notes) > 0
