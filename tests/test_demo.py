"""`python -m labkit demo` on its quick settings: the report, the model and the generated files exist and make sense."""
import json

import numpy as np
import pytest

from labkit import cli, demo
from labkit.checkpoint import load_model
from labkit.midi_io import read_midi


def test_settings_full_quick_and_overrides():
    from labkit.generate import DEFAULT_TEMPERATURE

    assert demo.DemoSettings().temperature == DEFAULT_TEMPERATURE
    full, quick = demo.demo_settings(quick=False), demo.demo_settings(quick=True)
    assert demo._schedule(full, from_scratch=False) == (600, 5e-4)
    assert demo._schedule(demo.demo_settings(train=True, quick=False), from_scratch=True) == (400, 3e-3)
    assert quick.quick and quick.steps < 10 and quick.length < full.length
    assert demo.demo_settings(quick=False, num=7, temperature=None).num == 7
    assert demo.demo_settings(quick=False, temperature=None).temperature == full.temperature


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--out", str(out), "--quick", "--seed", "3", "--num", "3"]) == 0
    return out


def test_quick_demo_writes_the_report_and_files(quick_demo):
    out = quick_demo
    report = (out / "report.md").read_text()
    for heading in ("## 1. The corpus", "## 2. The model", "## 3. Generated melodies", "## 5. Generation to order",
                    "## Run"):
        assert heading in report
    for name in ("corpus_distributions.png", "example_tune.mid", "example_tune.wav", "model.npz",
                 "model_training.png", "generated/generation.json"):
        assert (out / name).is_file(), name
    for name in ("example_tune.mid", "model.npz", "model_training.png", "generated/melody_003.mid"):
        assert name in report
    # the test-split scores in the report are real numbers of the right size
    row = next(line for line in report.splitlines() if line.startswith("| bits per event |"))
    bits = [float(x) for x in row.strip("| ").split("|")[1:]]
    assert bits and all(0 < b < 8 for b in bits)
    assert "temperature 0.8" in report and "seed 3" in report


def test_quick_demo_melodies_read_back_with_notes(quick_demo):
    generated = quick_demo / "generated"
    summary = json.loads((generated / "generation.json").read_text())
    assert summary["settings"]["seed"] == 3 and summary["settings"]["num"] == 3
    assert len(summary["melodies"]) == 3
    for record in summary["melodies"]:
        for key in ("midi", "wav", "png"):
            assert (generated / record[key]).is_file()
        notes = read_midi(generated / record["midi"]).notes
        assert len(notes) == record["notes"] > 0
        assert all(21 <= n.pitch <= 108 and n.end_time > n.start_time for n in notes)


def test_quick_demo_model_is_a_loadable_checkpoint(quick_demo):
    model, config = load_model(quick_demo / "model.npz")
    logits = model(np.zeros((1, 5), np.int32))
    assert logits.shape == (1, 5, config.vocab_size)
    assert np.isfinite(np.asarray(logits)).all()


def test_quick_demo_generates_to_order_and_judges_each_style(quick_demo):
    report = (quick_demo / "report.md").read_text()
    assert "## 5. Generation to order" in report
    section = report.split("## 5. Generation to order")[1].split("## Run")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("| ").split("|")]
            for line in section.splitlines() if line.startswith(("| irish |", "| chinese |"))}
    assert set(rows) == {"irish", "chinese"}
    for style, cells in rows.items():
        assert cells[2].startswith("2 (")                                   # two tunes asked for
        assert cells[3].endswith("%") and 0 <= int(cells[3][:-1]) <= 100   # the style model's agreement
        assert 0 <= float(cells[4]) <= 1                                     # median overlap
        files = sorted((quick_demo / "to_order" / style).glob("melody_*.mid"))
        assert len(files) == 2
        seq = read_midi(files[0])
        assert seq.time_signatures[0].numerator in (2, 3, 4, 6) and len(seq.key_signatures) == 1


def test_demo_refuses_an_unknown_style_to_order(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--quick", "--to-order", "klezmer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("labkit: --to-order: unknown style 'klezmer'")
    assert not (tmp_path / "d" / "report.md").exists()


def test_demo_refuses_an_unusable_out_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "below", "/proc/labkit-demo"):
        assert cli.main(["demo", "--out", str(out), "--quick"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("labkit: ") and "Traceback" not in err[0]
    assert a_file.read_text() == "not a folder"
