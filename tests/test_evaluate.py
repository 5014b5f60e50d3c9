"""Tests of labkit.evaluate and `python -m labkit evaluate cv`: folds, duplicates, CV, LSTM adapter, CLI."""
import json

import numpy as np
import pytest

from labkit.cli import main
from labkit.errors import ConfigError, CorpusError
from labkit.evaluate import (CVResult, HybridModel, LSTMEnsemble, LSTMModel, LSTMSettings, NgramModel,
                             cross_entropy_cv, event_view, interval_ngrams, kfold_by_tune, load_midi_dir, near_duplicates,
                             pitch_view, transpose_rows)
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi


def make_tunes(n, seed=0, length=(12, 30)):
    """Random-walk melodies built from a few shared motifs (so n-gram statistics carry over)."""
    rng = np.random.default_rng(seed)
    motifs = [rng.integers(-3, 4, size=4) for _ in range(6)]
    tunes = []
    for i in range(n):
        size = int(rng.integers(*length))
        pitches = [int(rng.integers(60, 72))]
        while len(pitches) < size:
            for step in motifs[rng.integers(len(motifs))]:
                pitches.append(int(np.clip(pitches[-1] + step, 48, 84)))
        pitches = pitches[:size]
        durations = rng.choice([1, 2, 2, 4], size=size)
        starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
        tunes.append(Melody.from_notes(pitches, starts, starts + durations, source=f"tune{i}"))
    return tunes


# --- folds ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(10, 10), (23, 10), (213, 10), (7, 3)])
def test_every_tune_is_tested_exactly_once(n, k):
    folds = kfold_by_tune(n, k, seed=4)
    assert len(folds) == k
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(n))
    for train, test in folds:
        assert not set(train) & set(test)
        assert len(train) + len(test) == n
        assert abs(len(test) - n / k) < 1
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, kfold_by_tune(n, k, seed=4)))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, kfold_by_tune(n, k, seed=5)))


@pytest.mark.parametrize("n,k", [(23, 10), (7, 3)])
def test_kfold_by_tune_matches_scikit_learn_kfold_on_the_shuffled_tunes(n, k):
    from sklearn.model_selection import KFold

    order = np.random.default_rng(4).permutation(n)
    expected = [(np.sort(order[train]), np.sort(order[test])) for train, test in KFold(n_splits=k).split(order)]
    for (train, test), (want_train, want_test) in zip(kfold_by_tune(n, k, seed=4), expected, strict=True):
        np.testing.assert_array_equal(train, want_train)
        np.testing.assert_array_equal(test, want_test)


def test_bits_are_scikit_learn_log_loss_in_bits():
    from sklearn.metrics import log_loss

    from labkit.evaluate import _bits

    rng = np.random.default_rng(0)
    dist = rng.dirichlet(np.ones(6), size=40)
    symbols = rng.integers(0, 6, size=40)
    bits = _bits([dist], [symbols])[0]
    assert np.isclose(bits.mean(), log_loss(symbols, dist, labels=range(6)) / np.log(2))


def test_bad_fold_counts():
    with pytest.raises(ConfigError, match="at least 5 tunes"):
        kfold_by_tune(4, 5)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        kfold_by_tune(10, 1)


# --- near-duplicates -----------------------------------------------------------------------------

def test_near_duplicate_filter():
    tunes = make_tunes(6, seed=1, length=(20, 30))
    song = tunes[0].pitches
    transposed = song + 5
    variant = song.copy()
    variant[len(variant) // 2] += 2                      # one changed note
    excerpt = song[: len(song) // 2 + 5]                 # half of the song, down an octave
    unrelated = np.array([72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 65, 67, 69, 71, 72, 60])
    candidates = [transposed, variant, excerpt - 12, unrelated, tunes[3].pitches + 1]
    flags = near_duplicates(candidates, [song, tunes[3]])
    assert flags.tolist() == [True, True, True, False, True]
    # the same pitches in another rhythm still count (rhythm is ignored)
    assert near_duplicates([Melody.from_notes(song, np.arange(len(song)) * 3, np.arange(len(song)) * 3 + 2)],
                           [tunes[0]]).tolist() == [True]
    # short tunes match only when identical up to transposition
    assert near_duplicates([[60, 62, 64], [60, 62, 65]], [[65, 67, 69]]).tolist() == [True, False]
    assert interval_ngrams(song) == interval_ngrams(transposed)


# --- cross-validation ----------------------------------------------------------------------------

def test_cross_entropy_cv_accounts_for_every_note():
    tunes = make_tunes(25)
    folds_seen = []
    r = cross_entropy_cv(tunes, lambda: NgramModel(128, "ltm", max_order=2), k=5, seed=1,
                         progress=lambda f, k, bits, s: folds_seen.append(f))
    assert isinstance(r, CVResult) and folds_seen == [0, 1, 2, 3, 4]
    notes = [len(t.pitches) for t in tunes]
    assert r.notes == sum(notes) == r.symbols
    assert sum(r.fold_tunes) == 25
    # the mean is the note-weighted mean of the folds
    fold_notes = [sum(notes[i] for i in test) for _, test in kfold_by_tune(25, 5, 1)]
    assert np.isclose(np.dot(r.folds, fold_notes) / sum(fold_notes), r.mean_bits_per_note)
    assert np.isclose(sum(r.tune_bits) / r.notes, r.mean_bits_per_note)
    # each tune's bits are those of a model fitted on the other folds alone
    expected = np.zeros(len(tunes))
    for train, test in kfold_by_tune(25, 5, 1):
        model = NgramModel(128, "ltm", max_order=2)
        model.fit([np.asarray(tunes[i].pitches, dtype=np.int64) for i in train])
        scored = model.score([np.asarray(tunes[i].pitches, dtype=np.int64) for i in test])
        expected[test] = [b.sum() for b in scored]
    np.testing.assert_allclose(r.tune_bits, expected)
    again = cross_entropy_cv(tunes, lambda: NgramModel(128, "ltm", max_order=2), k=5, seed=1)
    assert again.folds == r.folds
    assert r.to_json() == {"folds": r.folds, "mean_bits_per_note": r.mean_bits_per_note, "notes": r.notes}


def test_event_view_reports_bits_per_note_and_per_event():
    tunes = make_tunes(12, seed=2)
    r = cross_entropy_cv(tunes, lambda: NgramModel(90, "both+"), k=3, view="event")
    assert r.symbols == sum(len(event_view(t)) for t in tunes) > r.notes
    assert np.isclose(r.mean_bits_per_note * r.notes, r.mean_bits_per_symbol * r.symbols)


def test_models_learn_better_than_chance_and_plus_models_help():
    tunes = make_tunes(40, seed=3)
    results = {m: cross_entropy_cv(tunes, lambda m=m: NgramModel(128, m), k=5).mean_bits_per_note
               for m in ("ltm", "ltm+", "both+")}
    order0 = cross_entropy_cv(tunes, lambda: NgramModel(128, "ltm", max_order=0), k=5).mean_bits_per_note
    assert results["ltm"] < order0
    assert results["ltm+"] < results["ltm"]


class Recorder:
    """A model that records what it was trained on, scoring every symbol 1 bit."""

    seen = []

    def fit(self, train):               # no pretrain parameter: gets pretrain appended
        Recorder.seen.append([tuple(t) for t in train])

    def score(self, tests):
        return [np.ones(len(t)) for t in tests]


def test_pretraining_drops_near_duplicates_of_evaluated_tunes():
    tunes = make_tunes(10, seed=6)
    copy = tunes[4].pitches + 7
    unrelated = np.array([90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100])
    Recorder.seen = []
    r = cross_entropy_cv(tunes, Recorder, k=5, pretrain=[copy, unrelated])
    assert r.pretrain_removed == 1 and r.pretrain_used == 1
    assert np.isclose(r.mean_bits_per_note, 1.0)
    for train in Recorder.seen:
        assert tuple(unrelated) in train and tuple(copy) not in train
        assert len(train) == 8 + 1
    # a model with fit(train, pretrain) gets the pretraining tunes separately
    got = {}

    class Separate(Recorder):
        def fit(self, train, pretrain=None):
            got["pretrain"] = pretrain

    cross_entropy_cv(tunes, Separate, k=5, pretrain=[copy, unrelated])
    assert [tuple(p) for p in got["pretrain"]] == [tuple(unrelated)]


def test_cross_entropy_cv_rejects_bad_scores_and_empty_tunes():
    class Bad(Recorder):
        def score(self, tests):
            return [np.full(len(t), np.inf) for t in tests]

    with pytest.raises(ConfigError, match="finite"):
        cross_entropy_cv(make_tunes(6), Bad, k=3)
    with pytest.raises(ConfigError, match="no notes"):
        cross_entropy_cv([np.array([60, 62])] * 3 + [np.array([], dtype=int)], Recorder, k=2)


# --- LSTM adapter --------------------------------------------------------------------------------

def test_lstm_model_trains_scores_and_fine_tunes():
    tunes = [pitch_view(t) for t in make_tunes(24, seed=7)]
    # pretraining uses the same schedule as training from scratch, so it reuses the compiled step
    settings = LSTMSettings(hidden_size=16, embed_dim=8, batch_size=8, seq_len=16, num_steps=20,
                            eval_every=10, pretrain_steps=20, finetune_steps=10, learning_rate=1e-2)
    m = LSTMModel(128, settings)
    m.fit(tunes[:16])
    bits = m.score(tunes[16:])
    assert [len(b) for b in bits] == [len(t) for t in tunes[16:]]
    assert all(np.isfinite(b).all() and (b > 0).all() for b in bits)
    assert np.mean(np.concatenate(bits)) < np.log2(129)         # better than chance after 20 steps
    again = LSTMModel(128, settings)
    again.fit(tunes[:16])                                       # same seed, same model
    assert all(np.allclose(x, y) for x, y in zip(bits, again.score(tunes[16:])))
    # pretraining happens once per cache, then each fold fine-tunes
    cache = {}
    a = LSTMModel(128, settings, cache)
    a.fit(tunes[:8], pretrain=tunes[8:])
    assert len(cache) == 1 and {r["phase"] for r in a.history} == {"pretrain", "finetune"}
    pretrained = next(iter(cache.values()))
    b = LSTMModel(128, settings, cache)
    b.fit(tunes[4:12], pretrain=tunes[8:])
    assert next(iter(cache.values())) is pretrained
    assert all(np.isfinite(x).all() for x in b.score(tunes[:3]))
    with pytest.raises(ConfigError, match="outside"):
        LSTMModel(10, settings).fit([np.array([3, 12])])


def test_transpose_rows_keeps_the_start_token_the_intervals_and_the_range():
    rng = np.random.default_rng(1)
    rows = [np.array([128, 60, 62, 67]), np.array([128, 0, 3]), np.array([128, 127, 125]), np.array([128])]
    shifts = set()
    for _ in range(50):
        out = transpose_rows(rows, 4, 128, rng)
        for row, new in zip(rows, out):
            assert new[0] == 128 and len(new) == len(row)
            assert np.array_equal(np.diff(new[1:]), np.diff(row[1:]))
            assert new[1:].min(initial=0) >= 0 and new[1:].max(initial=0) <= 127
        shifts.add(int(out[0][1] - 60))
        assert out[1][1] >= 0 and out[2][1] <= 127              # edge rows only move inwards
    assert shifts == set(range(-4, 5))                          # every allowed shift is drawn


def test_lstm_augmentation_changes_training_and_keeps_the_seed_contract():
    tunes = [pitch_view(t) for t in make_tunes(16, seed=9)]
    plain = LSTMSettings(hidden_size=16, embed_dim=8, batch_size=8, seq_len=16, num_steps=10, eval_every=10)
    shifted = LSTMSettings(**{**plain.__dict__, "augment_semitones": 5})
    bits = {}
    for name, settings in (("plain", plain), ("shifted", shifted), ("again", shifted)):
        m = LSTMModel(128, settings)
        m.fit(tunes[:12])
        bits[name] = np.concatenate(m.score(tunes[12:]))
    assert not np.allclose(bits["plain"], bits["shifted"])
    assert np.allclose(bits["shifted"], bits["again"])


def test_lstm_distributions_match_its_scores():
    tunes = [pitch_view(t) for t in make_tunes(12, seed=10)]
    m = LSTMModel(128, LSTMSettings(hidden_size=16, embed_dim=8, batch_size=8, seq_len=16, num_steps=10,
                                    eval_every=10))
    m.fit(tunes[:8])
    dists = m.distributions(tunes[8:])
    for d, t, b in zip(dists, tunes[8:], m.score(tunes[8:])):
        assert d.shape == (len(t), 128) and np.allclose(d.sum(axis=1), 1.0)
        assert np.allclose(-np.log2(d[np.arange(len(t)), t]), b)


def test_hybrid_model_uses_what_the_tune_repeats():
    tunes = [pitch_view(t) for t in make_tunes(12, seed=11)]
    phrase = np.array([62, 69, 64, 71, 60, 67, 65, 72, 63, 70])   # not in the training motifs' style
    test = np.concatenate([phrase] * 4)
    settings = LSTMSettings(hidden_size=16, embed_dim=8, batch_size=8, seq_len=16, num_steps=10, eval_every=10)
    lstm = LSTMModel(128, settings)
    lstm.fit(tunes)
    alone = lstm.score([test])[0]
    hybrid = HybridModel(128, settings, ngram_models="stm")
    hybrid.fit(tunes)
    mixed = hybrid.score([test])[0]
    assert mixed.shape == test.shape and np.isfinite(mixed).all()
    assert mixed[-10:].mean() < 0.5 * alone[-10:].mean()          # the short-term model caught the repeats
    full = HybridModel(128, settings, ngram_models="both+")
    full.fit(tunes)
    assert np.isfinite(full.score([test])[0]).all()
    r = cross_entropy_cv(tunes, lambda: HybridModel(128, settings, ngram_models="stm"), k=3)
    assert len(r.folds) == 3 and r.mean_bits_per_note < np.log2(128)


def test_lstm_ensemble_averages_members_with_their_own_seeds():
    tunes = [pitch_view(t) for t in make_tunes(14, seed=13)]
    settings = LSTMSettings(hidden_size=16, embed_dim=8, batch_size=8, seq_len=16, num_steps=10, eval_every=10,
                            seed=4)
    ensemble = LSTMEnsemble(128, settings, members=2)
    ensemble.fit(tunes[:10])
    assert [m.settings.seed for m in ensemble.members] == [4, 5]
    single = [LSTMModel(128, m.settings) for m in ensemble.members]
    for m in single:
        m.fit(tunes[:10])
    mean = [(a + b) / 2 for a, b in zip(single[0].distributions(tunes[10:]), single[1].distributions(tunes[10:]))]
    for got, want in zip(ensemble.distributions(tunes[10:]), mean):
        assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(single[0].distributions(tunes[10:])[0], single[1].distributions(tunes[10:])[0])
    bits = np.concatenate(ensemble.score(tunes[10:]))
    assert np.isclose(bits.mean(), np.concatenate([-np.log2(d[np.arange(len(t)), t])
                                                   for d, t in zip(mean, tunes[10:])]).mean(), atol=1e-5)
    with pytest.raises(ConfigError, match="at least 1"):
        LSTMEnsemble(128, settings, members=0)
    mixed = LSTMEnsemble(128, settings, members=3, transposes=(0, 5))
    assert [m.settings.augment_semitones for m in mixed.members] == [0, 5, 0]
    assert [m.settings.seed for m in mixed.members] == [4, 5, 6]


# --- command line --------------------------------------------------------------------------------

def write_folder(folder, tunes):
    folder.mkdir(parents=True, exist_ok=True)
    for t in tunes:
        write_midi(melody_to_sequence(t), folder / f"{t.source}.mid")


def test_cli_prints_json(tmp_path, capsys):
    tunes = make_tunes(8, seed=8)
    write_folder(tmp_path / "midi", tunes)
    assert main(["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--folds", "4", "--pitch-only",
                 "--model", "ngram", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"folds", "mean_bits_per_note", "notes"}
    assert out["notes"] == sum(len(t.pitches) for t in tunes)
    # the same numbers as the library call the command stands for (defaults: n-gram both+, seed 0)
    melodies, _ = load_midi_dir(tmp_path / "midi")
    assert out == cross_entropy_cv(melodies, lambda: NgramModel(128, "both+"), k=4, view="pitch").to_json()


def test_cli_skips_a_broken_file_and_evaluates_the_rest(tmp_path, capsys):
    tunes = make_tunes(6, seed=9)
    write_folder(tmp_path / "midi" / "sub", tunes)
    (tmp_path / "midi" / "broken.mid").write_bytes(b"this is not a MIDI file")
    assert main(["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--folds", "3", "--model", "ngram"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.mid" in out
    assert "fold  3/3" in out and "bits/note" in out and "bits/event" in out
    assert f"over {sum(len(t.pitches) for t in tunes)} notes" in out
    melodies, skipped = load_midi_dir(tmp_path / "midi")
    assert len(melodies) == 6 and len(skipped) == 1


def test_cli_reports_bad_requests(tmp_path, capsys):
    write_folder(tmp_path / "midi", make_tunes(3, seed=10))
    assert main(["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--folds", "10"]) == 2
    assert "needs at least 10" in capsys.readouterr().err
    assert main(["evaluate", "cv", "--midi-dir", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(CorpusError):
        load_midi_dir(tmp_path / "nowhere")


@pytest.mark.parametrize("flag, value", [("--bias", "nan"), ("--bias", "inf"), ("--bias", "-1"), ("--folds", "1"),
                                         ("--folds", "99999999999999999999"), ("--seed", "4294967296"),
                                         ("--steps-per-quarter", "0"), ("--members", "0"), ("--hidden-size", "0"),
                                         ("--order", "-1"), ("--transpose", "nan")])
def test_cli_flags_out_of_range_blame_the_flag_before_reading_a_tune(tmp_path, capsys, flag, value):
    """``--bias nan`` used to surface as a problem of some tune, minutes into the run."""
    write_folder(tmp_path / "midi", make_tunes(4, seed=11))
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--model", "ngram", flag, value])
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("labkit: evaluate cv: argument ") and flag in lines[0] and ".mid" not in lines[0]


def test_cli_model_options_change_the_result(tmp_path, capsys):
    tunes = make_tunes(12, seed=11)
    write_folder(tmp_path / "midi", tunes)
    base = ["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--folds", "3", "--pitch-only", "--model", "ngram",
            "--json"]
    results = {}
    for extra in ([], ["--ngram-models", "ltm", "--order", "1"], ["--pitch-alphabet", "corpus"]):
        assert main(base + extra) == 0
        results[" ".join(extra)] = json.loads(capsys.readouterr().out)["mean_bits_per_note"]
    assert len(set(results.values())) == 3     # each option reaches the model
    without_pitch_only = [a for a in base if a not in ("--pitch-only", "--json")]
    assert main(without_pitch_only + ["--pitch-alphabet", "corpus"]) == 2     # only with --pitch-only
    assert "--pitch-only" in capsys.readouterr().err


def test_cli_runs_the_hybrid_and_checks_transposition(tmp_path, capsys):
    tunes = make_tunes(9, seed=12)
    write_folder(tmp_path / "midi", tunes)
    base = ["evaluate", "cv", "--midi-dir", str(tmp_path / "midi"), "--folds", "3", "--hidden-size", "8",
            "--steps", "10"]
    assert main(base + ["--pitch-only", "--transpose", "2", "--bias", "1"]) == 0     # the hybrid is the default
    out = capsys.readouterr().out
    assert "+ n-gram both+, bias 1" in out and "transposed up to 2" in out and "fold  3/3" in out
    assert main(base + ["--pitch-only", "--model", "lstm", "--members", "2", "--transpose", "0", "3"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2" in out and "transposed up to 0/3" in out and "fold  3/3" in out
    assert main(base + ["--transpose", "2"]) == 2                     # events are not pitches
    assert "--transpose" in capsys.readouterr().err
