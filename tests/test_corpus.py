"""Tests of labkit.corpus: the committed corpus (manifest, files, splits, the IDyOM check) and the builder.

The builder is tested on a tiny ABC source written here (never on the real
corpus, which takes many minutes to rebuild).
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from labkit import corpus
from labkit.corpus import build as corpus_build
from labkit.errors import ConfigError, CorpusError, LabkitError

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------
# The committed corpus
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest():
    if not (REPO_DATA / corpus.MANIFEST_FILE).is_file():
        pytest.fail(f"{REPO_DATA / corpus.MANIFEST_FILE} is missing: run `python -m labkit corpus build`")
    return corpus.load_manifest(REPO_DATA)


def test_manifest_has_the_columns_and_enough_tunes_from_enough_collections(manifest):
    assert list(manifest.columns[: len(corpus.MANIFEST_COLUMNS)]) == list(corpus.MANIFEST_COLUMNS)
    assert len(manifest) >= 10_000
    assert manifest["collection"].nunique() >= 5
    assert {"german", "chinese", "irish", "fiddle", "chorale"} <= set(manifest["style"])


def test_ids_are_unique_safe_and_every_file_exists(manifest):
    assert manifest["id"].is_unique
    assert manifest["id"].str.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*").all()
    expected = "midi/" + manifest["collection"] + "/" + manifest["id"] + ".mid"
    assert (manifest["path"] == expected).all()
    assert (manifest["id"].str.split("-").str[0] == manifest["collection"]).all()
    missing = [p for p in manifest["path"] if not (REPO_DATA / p).is_file()]
    assert not missing, f"{len(missing)} MIDI files missing, e.g. {missing[:3]}"


def test_splits_are_split_of_the_id_and_roughly_80_10_10(manifest):
    assert (manifest["split"] == manifest["id"].map(corpus.split_of)).all()
    share = manifest["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.02
    assert abs(share["valid"] - 0.1) < 0.02
    assert abs(share["test"] - 0.1) < 0.02
    # every style is in every split (no style lives only in training)
    per_style = manifest.groupby("style")["split"].nunique()
    assert (per_style == 3).all(), per_style


def test_kinder0_is_the_idyom_kinder_set(manifest):
    """Pearce (2005)'s `kinder` set: 213 nursery songs, 8,393 notes with ties merged."""
    kinder = corpus.select(manifest, subsets="kinder0")
    assert len(kinder) == 213
    assert int(kinder["notes"].sum()) == 8393
    assert set(kinder["style"]) == {"german"}


def test_manifest_values_are_plausible(manifest):
    assert (manifest["notes"] > 0).all()
    assert (manifest["duration_quarters"] > 0).all()
    assert (manifest["duration_seconds"] > 0).all()
    assert (manifest["index"] >= 1).all()
    # no tune blown up by misread repeat marks (the longest real ones: ~1,100 notes, ~700 quarters)
    assert manifest["notes"].max() < 3000 and manifest["duration_quarters"].max() < 2000
    assert manifest["meter"].str.fullmatch(r"(\d+/\d+)?").all()
    assert manifest["key"].str.fullmatch(r"([A-G][b#]? [a-z]+)?").all()
    assert (manifest["title"] != "").mean() > 0.99
    chorales = corpus.select(manifest, collections="bach")
    assert len(chorales) >= 300 and (chorales["style"] == "chorale").all()


def test_reading_tunes_back_gives_the_manifests_note_counts(manifest):
    rng = random.Random(0)
    rows = [manifest[manifest["collection"] == c].iloc[0] for c in manifest["collection"].unique()]
    rows += [manifest.iloc[i] for i in rng.sample(range(len(manifest)), 6)]
    for row in rows:
        seq = corpus.read_tune(row, REPO_DATA)
        melody = [n for n in seq.notes if n.instrument == min(m.instrument for m in seq.notes)]
        assert len(melody) == row["notes"], row["id"]
        end_quarters = max(n.end_time for n in seq.notes) * seq.tempos[0].qpm / 60.0
        assert end_quarters == pytest.approx(row["duration_quarters"], abs=0.02), row["id"]
        if row["collection"] == "bach":
            assert len({n.instrument for n in seq.notes}) == 4
        else:
            assert {n.instrument for n in seq.notes} == {0}
            starts = sorted(n.start_time for n in seq.notes)
            assert len(set(starts)) == len(starts), f"{row['id']} is not monophonic"
    # by id alone, too
    first = manifest.iloc[0]
    assert len(corpus.read_tune(first["id"], REPO_DATA).notes) >= first["notes"]


def test_build_report_lists_skipped_tunes_with_reasons():
    import json

    report = json.loads((REPO_DATA / corpus_build.REPORT_FILE).read_text(encoding="utf-8"))
    assert report["tunes"] >= 10_000
    for entry in report["skipped"]:
        assert entry["reason"] and entry["id"] and entry["collection"] in report["collections"]
    assert sum(c["skipped"] for c in report["collections"].values()) == len(report["skipped"])


# --------------------------------------------------------------------------
# Finding and reading: errors and filters
# --------------------------------------------------------------------------

def test_reading_the_corpus_imports_no_music21():
    import subprocess
    import sys

    code = ("import sys, labkit.corpus as c; m = c.load_manifest(); c.read_tune(m.iloc[0]); "
            "print('music21' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_corpus_root_prefers_labkit_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    assert corpus.corpus_root() == tmp_path
    with pytest.raises(CorpusError, match="manifest.csv"):
        corpus.load_manifest()


def test_load_manifest_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("id,collection\nabc-1,abc\n")
    with pytest.raises(CorpusError, match=r"manifest\.csv: manifest lacks column\(s\) subset"):
        corpus.load_manifest(tmp_path)
    header = ",".join(corpus.MANIFEST_COLUMNS)
    row = "toy-a-0001,toy,a,test,T,toy.abc,1,,2/4,C major,{notes},4,2,midi/toy/toy-a-0001.mid,train"
    path.write_text(header + "\n" + row.format(notes="many") + "\n")
    with pytest.raises(CorpusError, match="'notes' holds 'many'"):
        corpus.load_manifest(tmp_path)
    path.write_text(header + "\n" + row.format(notes=3) + "\n" + row.format(notes=3) + "\n")
    with pytest.raises(CorpusError, match="duplicate tune id 'toy-a-0001'"):
        corpus.load_manifest(tmp_path)


def test_split_of_is_stable_and_proportioned():
    ids = [f"toy-{i:05d}" for i in range(20_000)]
    splits = [corpus.split_of(i) for i in ids]
    assert splits == [corpus.split_of(i) for i in ids]
    for name, share in zip(corpus.SPLITS, corpus.SPLIT_FRACTIONS):
        assert abs(splits.count(name) / len(ids) - share) < 0.01


def test_select_filters_and_rejects_unknown_names():
    import pandas as pd

    m = pd.DataFrame({"id": ["a-1", "a-2", "b-1"], "collection": ["a", "a", "b"], "subset": ["x", "y", ""],
                      "style": ["s1", "s2", "s1"], "split": ["train", "test", "train"]})
    assert corpus.select(m, styles="s1")["id"].tolist() == ["a-1", "b-1"]
    assert corpus.select(m, styles=["s1"], collections="a")["id"].tolist() == ["a-1"]
    assert corpus.select(m, split="train", subsets=["x", ""])["id"].tolist() == ["a-1", "b-1"]
    assert corpus.select(m, split="valid").empty  # a known split that happens to be empty
    with pytest.raises(ConfigError, match="'irsh' not in the manifest"):
        corpus.select(m, styles="irsh")


def test_tune_path_errors_are_clear(tmp_path):
    with pytest.raises(CorpusError, match="no MIDI file"):
        corpus.tune_path("toy-0001", tmp_path)
    with pytest.raises(CorpusError, match="not a tune id"):
        corpus.tune_path("../etc/passwd", tmp_path)


# --------------------------------------------------------------------------
# Conversion of one tune
# --------------------------------------------------------------------------

music21 = pytest.importorskip("music21")


def test_abc_to_sequence_merges_ties_pads_the_pickup_and_reads_tempo_and_key():
    text = "X:1\nT:t\nM:3/4\nL:1/4\nQ:1/4=90\nK:Ador\nE | A2 B- | B c z | d3 |]\n"
    seq, info = corpus_build.abc_to_sequence(text)
    assert [n.pitch for n in seq.notes] == [64, 69, 71, 72, 74]      # B-B tie merged
    spq = 60.0 / 90.0
    starts = [round(n.start_time / spq, 6) for n in seq.notes]
    assert starts == [2.0, 3.0, 5.0, 7.0, 9.0]                      # pickup on beat 3; the rest kept
    assert round(seq.notes[2].end_time / spq, 6) == 7.0               # tied B lasts 2 quarters
    assert seq.tempos[0].qpm == pytest.approx(90.0)
    assert (info["meter"], info["key"], info["notes"]) == ("3/4", "A dorian", 5)
    assert info["duration_quarters"] == pytest.approx(12.0)
    ks = seq.key_signatures[0]
    assert (ks.key, ks.mode) == (7, ks.MAJOR)  # A dorian has G major's signature
    ts = seq.time_signatures[0]
    assert (ts.time, ts.numerator, ts.denominator) == (0.0, 3, 4)


def test_infer_mode_turns_a_tonic_only_key_minor_when_the_minor_third_dominates():
    text = "X:1\nM:2/4\nL:1/8\nK:D\nD2 =F2 | A2 =F2 | E2 D2 | D4 |]\n"   # Essen style: D minor as K:D
    seq, info = corpus_build.abc_to_sequence(text, infer_mode=True)
    assert info["key"] == "D minor"
    assert (seq.key_signatures[0].key, seq.key_signatures[0].mode) == (2, seq.key_signatures[0].MINOR)
    assert corpus_build.abc_to_sequence(text)[1]["key"] == "D major"
    major = text.replace("=F", "F")
    assert corpus_build.abc_to_sequence(major, infer_mode=True)[1]["key"] == "D major"


def test_abc_to_sequence_keeps_the_top_note_of_chords_and_expands_repeats():
    seq, info = corpus_build.abc_to_sequence("X:1\nM:2/4\nL:1/8\nK:C\n|: [CEG]2 D2 | E2 F2 :| G2 A2 | G4 |]\n")
    assert [n.pitch for n in seq.notes] == [67, 62, 64, 65, 67, 62, 64, 65, 67, 69, 67]
    assert info["warnings"] == []


def test_end_repeats_without_start_repeat_from_the_previous_section():
    # ABC: `:|` with no `|:` goes back to the previous `:|` (music21 alone goes back further)
    seq, info = corpus_build.abc_to_sequence("X:1\nM:2/4\nL:1/8\nK:C\nA2B2|c2d2:|e2f2|g2a2:|\n")
    names = "A B c d A B c d e f g a e f g a".split()
    midi = {"A": 69, "B": 71, "c": 72, "d": 74, "e": 76, "f": 77, "g": 79, "a": 81}
    assert [n.pitch for n in seq.notes] == [midi[x] for x in names]
    assert info["warnings"] == []


def test_bad_abc_raises_tune_error():
    with pytest.raises(corpus_build.TuneError, match="cannot parse"):
        corpus_build.abc_to_sequence("X:1\nM:4/4\nL:1/8\nK:C\nC/0 D|\n")
    with pytest.raises(corpus_build.TuneError, match="no notes"):
        corpus_build.abc_to_sequence("X:1\nM:4/4\nL:1/8\nK:C\nx8|\n")
    assert issubclass(corpus_build.TuneError, LabkitError)


def test_satb_score_becomes_four_instruments_soprano_first():
    from music21 import meter, note, stream

    score = stream.Score()
    for name, pitch in (("Bass", 48), ("Tenor", 55), ("Soprano", 72), ("Alto", 64), ("Organ", 36)):
        part = stream.Part()
        part.partName = name
        part.append(meter.TimeSignature("4/4"))
        part.append([note.Note(pitch, quarterLength=2), note.Note(pitch + 2, quarterLength=2)])
        score.insert(0, part)
    seq, info = corpus_build.music21_to_sequence(score, "satb")
    assert [i.name for i in seq.instrument_infos] == list(corpus_build.CHORALE_VOICES)
    by_instrument = {i: sorted(n.pitch for n in seq.notes if n.instrument == i) for i in range(4)}
    assert by_instrument == {0: [72, 74], 1: [64, 66], 2: [55, 57], 3: [48, 50]}
    assert {n.program for n in seq.notes} == {corpus_build.CHORALE_PROGRAM}
    assert info["notes"] == 2
    score.remove(score.parts[0])  # no bass: not a chorale
    with pytest.raises(corpus_build.TuneError, match="four-part chorale"):
        corpus_build.music21_to_sequence(score, "satb")


# --------------------------------------------------------------------------
# Building a tiny collection
# --------------------------------------------------------------------------

TOY_ABC = """% a toy source: three good tunes, one broken, one without notes
L:1/8

X:1
T:Good One
M:2/4
K:G
B | c2 d2- | d2 e2 | g4 |]

X:2
T:Broken
M:4/4
K:C
C/0 D E F |]

X:3
T:Good Two
M:6/8
K:Em
E2F G2A | B3 B3 |]

X:4
T:Silent
M:4/4
K:C
x8 |]

X:5
T:Good Three
M:3/4
Q:1/4=60
K:D
|: D2 F2 A2 | F2 E2 D2 :| d6 | A6 |]
"""


def _toy_collection(root: Path) -> corpus_build.Collection:
    (root / "toy.abc").write_text(TOY_ABC, encoding="utf-8")
    return corpus_build.Collection("toy", "test", root, ("toy.abc",), ids="subset")


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_keeps_good_tunes_reports_bad_ones_and_reruns_without_rewriting(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    col = _toy_collection(src)
    out = tmp_path / "out"
    report = corpus_build.build(out, jobs=1, progress=False, collections=[col])

    m = corpus.load_manifest(out)
    assert m["id"].tolist() == ["toy-toy-0001", "toy-toy-0003", "toy-toy-0005"]
    assert m["title"].tolist() == ["Good One", "Good Two", "Good Three"]
    assert m["notes"].tolist() == [5, 6, 14]           # tie merged; repeat of tune 5 written out
    assert m["meter"].tolist() == ["2/4", "6/8", "3/4"]
    assert m["key"].tolist() == ["G major", "E minor", "D major"]
    assert m["duration_seconds"].tolist() == pytest.approx([4.0, 3.0, 18.0])
    assert (m["split"] == m["id"].map(corpus.split_of)).all()
    assert report.counts["toy"] == {"tunes": 3, "skipped": 2, "styles": {"test": 3}, "notes": 25}
    reasons = {s["id"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"toy-toy-0002", "toy-toy-0004"}
    assert "ZeroDivisionError" in reasons["toy-toy-0002"] and reasons["toy-toy-0004"] == "no notes"
    for row in m.itertuples():
        assert len(corpus.read_tune(row._asdict(), out).notes) == row.notes

    before = _snapshot(out)
    again = corpus_build.build(out, jobs=1, progress=False, collections=[col])
    assert (again.converted, again.reused, again.written, again.removed) == (0, 5, [], 0)
    assert _snapshot(out) == before  # same bytes, same modification times

    # A changed tune is converted again; a tune that disappears loses its file.
    (src / "toy.abc").write_text(TOY_ABC.replace("g4 |]", "g2 a2 |]").split("X:5")[0], encoding="utf-8")
    third = corpus_build.build(out, jobs=1, progress=False, collections=[col])
    assert third.converted == 1 and third.removed == 1
    m3 = corpus.load_manifest(out)
    assert m3["id"].tolist() == ["toy-toy-0001", "toy-toy-0003"]
    assert m3["notes"].tolist() == [6, 6]
    assert not (out / "midi/toy/toy-toy-0005.mid").exists()


def test_build_is_deterministic_and_parallel_build_matches(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    col = _toy_collection(src)
    corpus_build.build(tmp_path / "a", jobs=1, progress=False, collections=[col])
    corpus_build.build(tmp_path / "b", jobs=2, progress=False, collections=[col])
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert a.keys() == b.keys() and {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()}


def test_build_only_rebuilds_one_collection_and_keeps_the_others(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    toy = _toy_collection(src)
    (src / "other.abc").write_text("X:1\nT:Other\nM:2/4\nL:1/8\nK:C\nC2 E2 | G4 |]\n", encoding="utf-8")
    other = corpus_build.Collection("other", "test2", src, ("other.abc",), ids="file")
    out = tmp_path / "out"
    corpus_build.build(out, jobs=1, progress=False, collections=[toy, other])
    assert corpus.load_manifest(out)["id"].tolist() == ["toy-toy-0001", "toy-toy-0003", "toy-toy-0005",
                                                        "other-other"]
    (src / "other.abc").write_text("X:1\nT:Other\nM:2/4\nL:1/8\nK:C\nC2 E2 | G2 c2 |]\n", encoding="utf-8")
    report = corpus_build.build(out, jobs=1, progress=False, collections=[toy, other], only=["other"])
    assert report.converted == 1 and report.counts["toy"]["tunes"] == 3 and report.counts["toy"]["skipped"] == 2
    m = corpus.load_manifest(out)
    assert len(m) == 4 and m.set_index("id").loc["other-other", "notes"] == 4
    with pytest.raises(ConfigError, match="unknown collection 'nope'"):
        corpus_build.build(out, jobs=1, progress=False, collections=[toy, other], only=["nope"])


def test_cli_reports_a_bad_collection_in_one_line(tmp_path, capsys):
    from labkit.cli import main

    assert main(["corpus", "build", "--out", str(tmp_path), "--only", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labkit: --only: unknown collection 'nope'") and "\n" not in err
