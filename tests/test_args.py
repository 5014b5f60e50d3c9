"""Tests of labkit.commands._args: every numeric flag of every command is checked against its range at parse time,
with one line naming the flag and exit status 2."""
from __future__ import annotations

import argparse
import json

import pytest

from labkit import cli
from labkit.commands._args import (MAX_GENERATED_STEPS, MAX_MELODIES, CommandParser, integer, number, seed,
                                   temperature)
from labkit.errors import ConfigError
from labkit.sample import MAX_SEED, SampleConfig


def all_parsers(parser=None, path=()):
    """``(command words, parser)`` of the top parser and every sub-command, recursively."""
    parser = parser or cli.build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, path + (name,))


def typed_options():
    """Every option with a ``type`` function: ``(command words, option string, type)``."""
    return [(words, action.option_strings[0], action.type) for words, parser in all_parsers()
            for action in parser._actions if action.option_strings and action.type is not None]


def cli_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_no_numeric_flag_is_a_bare_int_or_float():
    options = typed_options()
    assert len(options) > 30
    bare = [(words, flag) for words, flag, kind in options if kind in (int, float)]
    assert not bare, f"numeric flags without a range check: {bare}"


#: Flags for which a value is meaningful although it looks hostile (a gap of any length: never split).
MEANINGFUL = {("data", "prepare", "--max-gap"): {"inf", "1e999", "99999999999999999999999", "1" * 5000}}


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999", "99999999999999999999999",
                                  "-99999999999999999999999", "", "12abc", "1" * 5000])
def test_every_numeric_flag_refuses_hostile_numbers(text):
    for words, flag, kind in typed_options():
        if text in MEANINGFUL.get((*words, flag), ()):
            assert kind(text) >= 1e22
            continue
        with pytest.raises(argparse.ArgumentTypeError) as info:
            kind(text)
        message = str(info.value)
        assert "\n" not in message and len(message) < 200, (words, flag, message)


@pytest.mark.parametrize("argv, flag", [
    (["generate", "--num", "99999999999999999999"], "--num"),
    (["generate", "--num", "0"], "--num"),
    (["generate", "--length", "10000000000"], "--length"),
    (["generate", "--seed", "99999999999999999999999"], "--seed"),
    (["generate", "--seed", "4294967296"], "--seed"),
    (["generate", "--seed", "-1"], "--seed"),
    (["generate", "--temperature", "nan"], "--temperature"),
    (["generate", "--temperature", "1e-30"], "--temperature"),
    (["generate", "--top-p", "inf"], "--top-p"),
    (["generate", "--top-k", "-1"], "--top-k"),
    (["generate", "--beam", "1e3"], "--beam"),
    (["generate", "--qpm", "0"], "--qpm"),
    (["generate", "--primer-steps", "0"], "--primer-steps"),
    (["generate", "--guidance", "-1"], "--guidance"),
    (["generate", "--guidance", "nan"], "--guidance"),
    (["data", "prepare", "--midi-dir", "x", "--out", "y", "--steps-per-quarter", "0"], "--steps-per-quarter"),
    (["data", "prepare", "--midi-dir", "x", "--out", "y", "--min-notes", "-5"], "--min-notes"),
    (["data", "prepare", "--midi-dir", "x", "--out", "y", "--max-gap", "nan"], "--max-gap"),
    (["evaluate", "cv", "--midi-dir", "x", "--bias", "nan"], "--bias"),
    (["evaluate", "cv", "--midi-dir", "x", "--folds", "1"], "--folds"),
    (["evaluate", "cv", "--midi-dir", "x", "--order", "99999999999999999999"], "--order"),
    (["evaluate", "cv", "--midi-dir", "x", "--transpose", "0", "-2"], "--transpose"),
    (["style", "train", "--out", "x", "--folds", "1"], "--folds"),
    (["style", "train", "--out", "x", "--l2", "inf"], "--l2"),
    (["style", "experiment", "--l2-grid", "0.1", "nan"], "--l2-grid"),
    (["style", "score", "--min-notes", "0", "x.mid"], "--min-notes"),
    (["midi", "inspect", "--steps-per-quarter", "100000", "x.mid"], "--steps-per-quarter"),
    (["corpus", "build", "--jobs", "0"], "--jobs"),
    (["demo", "--temperature", "-1"], "--temperature"),
    (["demo", "--seed", "4294967296"], "--seed"),
])
def test_out_of_range_flags_give_one_line_and_exit_status_2(capsys, tmp_path, argv, flag):
    status, lines = cli_error(capsys, argv)
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("labkit: ") and f"argument {flag}" in lines[0], lines


def test_other_usage_errors_are_one_line_too(capsys):
    assert cli_error(capsys, ["generate", "--bogus"])[0] == 2
    status, lines = cli_error(capsys, ["style", "score"])
    assert status == 2 and len(lines) == 1 and lines[0].startswith("labkit: style score: ")


def test_caps_are_stated_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"1..{MAX_MELODIES}" in text and f"1..{MAX_GENERATED_STEPS}" in text and "0..4294967295" in text


def test_the_helpers():
    assert integer(1, 3)("3") == 3 and integer(1, 3)(" 2 ") == 2
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be an integer in 1\.\.3, got '4'"):
        integer(1, 3)("4")
    assert number(0, 1, low_open=True)("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\]"):
        number(0, 1, low_open=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="in \\[4, 1000\\)"):
        number(4, 1000, high_open=True)("1000")
    with pytest.raises(argparse.ArgumentTypeError, match=r"got '1111111111111111111111111111111111111\.\.\.'"):
        integer(0, 1)("1" * 5000)
    assert seed("0") == 0 and seed(str(MAX_SEED)) == MAX_SEED == 2 ** 32 - 1
    assert temperature("0.001") == 0.001
    with pytest.raises(SystemExit):
        CommandParser(prog="python -m labkit x").error("bad")


def test_seeds_outside_32_bits_are_refused_not_aliased():
    """jax.random.key keeps the lower 32 bits: 2**32 would be seed 0, -1 would be 2**32 - 1."""
    assert SampleConfig(seed=MAX_SEED).validate().seed == MAX_SEED
    for bad in (MAX_SEED + 1, -1, True):
        with pytest.raises(ConfigError, match="seed"):
            SampleConfig(seed=bad).validate()


def test_the_largest_seed_is_used_and_recorded(tmp_path, capsys):
    from labkit.checkpoint import save_model
    from labkit.encoding import MelodyEncoding
    from labkit.models import ModelConfig, make_model

    config = ModelConfig(vocab_size=MelodyEncoding().vocab_size, embed_dim=4, hidden_size=8, num_layers=1)
    checkpoint = save_model(tmp_path / "m.npz", make_model(config, 0), config)
    outputs = {}
    for s in ("0", str(MAX_SEED)):
        out = tmp_path / f"seed{s}"
        assert cli.main(["generate", "--checkpoint", str(checkpoint), "--num", "1", "--length", "32",
                         "--seed", s, "--out", str(out)]) == 0
        assert json.loads((out / "generation.json").read_text())["settings"]["seed"] == int(s)
        outputs[s] = (out / "melody_001.mid").read_bytes()
    assert outputs["0"] != outputs[str(MAX_SEED)]
