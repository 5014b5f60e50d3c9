"""Every tune of the shipped corpus: its melody extracts, fits the encoding and survives encode/decode.

The melody of a tune is :func:`labkit.melody.tune_melody` of the tune's MIDI
file (the first pitched instrument, the whole tune; a chorale's soprano).
Without ``LABKIT_FAST`` the test reads every file (in worker processes, one per
core); with it, a fixed sample that holds every collection and style. It is
skipped only when the corpus (``manifest.csv``) is not there.
"""
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from labkit.env import FAST
from labkit.errors import CorpusError

STEPS_PER_QUARTER = 4
#: Tunes read under LABKIT_FAST: this many per (collection, style), the first by id.
FAST_PER_GROUP = 12


@pytest.fixture(scope="module")
def corpus():
    from labkit.corpus import corpus_root, load_manifest

    try:
        root = corpus_root()
    except CorpusError:
        pytest.skip("no corpus: data/manifest.csv does not exist")
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"no corpus: {root / 'manifest.csv'} does not exist")
    return root, load_manifest(root)


def tunes_to_check(manifest):
    """All tunes, or under LABKIT_FAST the first :data:`FAST_PER_GROUP` of each collection and style."""
    if not FAST:
        return manifest
    return manifest.sort_values("id").groupby(["collection", "style"], sort=False).head(FAST_PER_GROUP)


def check_tunes(root, rows):
    """Worker: ``[(id, path, notes), ...]`` -> ``[(id, problem or "", melody notes or -1), ...]``."""
    from labkit.corpus import read_tune
    from labkit.encoding import MelodyEncoding
    from labkit.errors import LabkitError
    from labkit.melody import tune_melody

    enc = MelodyEncoding()
    out = []
    for tune_id, path, _ in rows:
        try:
            melody = tune_melody(read_tune({"id": tune_id, "path": path}, root),
                                 steps_per_quarter=STEPS_PER_QUARTER)
            back = enc.decode(enc.encode(melody), steps_per_quarter=STEPS_PER_QUARTER)
        except LabkitError as error:
            out.append((tune_id, f"{type(error).__name__}: {error}", -1))
            continue
        if len(melody.pitches) == 0:
            problem = "the melody has no notes"
        elif back != melody or not all(np.array_equal(a, b) for a, b in zip(back.notes(), melody.notes())):
            problem = "decode(encode(melody)) differs from the melody"
        else:
            problem = ""
        out.append((tune_id, problem, len(melody.pitches)))
    return out


def test_the_fast_sample_covers_every_collection_and_style(corpus):
    _, manifest = corpus
    sample = tunes_to_check(manifest)
    groups = set(zip(manifest["collection"], manifest["style"]))
    assert set(zip(sample["collection"], sample["style"])) == groups
    assert len(sample) == (len(manifest) if not FAST else
                           sum(min(FAST_PER_GROUP, n) for n in manifest.groupby(["collection", "style"]).size()))


def test_every_tune_melody_round_trips_through_the_encoding(corpus):
    root, manifest = corpus
    checked = tunes_to_check(manifest)
    rows = list(zip(checked["id"], checked["path"], checked["notes"]))
    jobs = max(1, min(os.cpu_count() or 1, 8))
    chunks = [rows[i::jobs * 8] for i in range(jobs * 8)]
    started = time.perf_counter()
    if jobs == 1 or len(rows) < 500:
        results = [r for chunk in chunks for r in check_tunes(root, chunk)]
    else:  # spawn: a forked JAX process (other tests import it) may hang
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [r for part in pool.map(check_tunes, [root] * len(chunks), chunks) for r in part]
    elapsed = time.perf_counter() - started
    failures = [f"{tune_id}: {problem}" for tune_id, problem, _ in results if problem]
    expected = dict(zip(checked["id"], checked["notes"]))
    differ = {tune_id: (n, expected[tune_id]) for tune_id, problem, n in results
              if not problem and n != expected[tune_id]}
    print(f"\n{len(results)} of {len(manifest)} tunes in {elapsed:.1f} s on {jobs} process(es); "
          f"{len(failures)} fail; {len(differ)} have fewer notes than the manifest at {STEPS_PER_QUARTER} "
          f"steps per quarter (notes closer than a step merge): {sorted(differ)[:10]}")
    assert sorted(r[0] for r in results) == sorted(checked["id"]), "every tune checked once"
    assert not failures, f"{len(failures)} of {len(rows)} tunes fail:\n" + "\n".join(sorted(failures)[:40])
    # Quantizing can only merge notes (ornaments, triplets at 4 steps a quarter), never invent them.
    assert all(n < notes for n, notes in differ.values()), {k: v for k, v in differ.items() if v[0] >= v[1]}
