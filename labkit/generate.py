"""Generating melodies with a trained model and writing them as MIDI, WAV and piano rolls.

The pieces every front end shares (``python -m labkit generate``, ``make demo``, notebooks
``04_lstm_melody_model.ipynb`` and ``05_sampling_studio.ipynb``):

* :func:`labkit.checkpoint.load_melody_model` (not here): a model from a checkpoint, or the model
  that ships with labkit (``labkit/assets/melody_lstm.npz``, trained by ``python -m labkit.train_shipped``);
* :func:`read_primer`: primer tokens from the melody of a MIDI file;
* :func:`generate_melodies`: ``num`` melodies by sampling (temperature, top-k, top-p) or by
  beam search, as :class:`~labkit.melody.Melody` objects that start with the primer;
* :func:`write_outputs`: ``melody_001.mid`` (and ``.wav``, ``.png``) per melody, plus
  ``generation.json`` with the settings and a few statistics of each melody.

Everything random comes from ``seed`` (one JAX key, ``jax.random.key(seed)``), so the same
model, settings and seed write byte-identical files.

Example::

    python -m labkit generate --num 4 --length 128 --temperature 0.9 --seed 1 --out out/gen --audio

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from labkit._common import atomic_write, check_output_folder
from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError, EncodingError, NoMelodyError
from labkit.melody import DEFAULT_QPM, Melody

#: Default sampling settings of the command line and the demo. Temperature 0.8: melodies of the
#: shipped model sampled at 0.8 come closest to the corpus's test tunes in note count, note length and
#: pitch span; at 1.0 they are too busy and too wide (figures in benchmarks/README.md).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_LENGTH = 128


# --- parameters -------------------------------------------------------------------------------

def check_settings(*, num: int = 4, length: int = DEFAULT_LENGTH, temperature: float = DEFAULT_TEMPERATURE,
                   top_k: int = 0, top_p: float = 1.0, beam: int = 0, seed: int = 0,
                   vocab_size: int | None = None) -> None:
    """Raise :class:`ConfigError` naming the first unusable setting (see :func:`generate_melodies`).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> check_settings(temperature=0)
        Traceback (most recent call last):
        ...
        labkit.errors.ConfigError: temperature must be a number > 0, got 0 (for the most likely token use top_k=1 or beam search)
    """
    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(num) or num < 1:
        raise ConfigError(f"num (melodies to generate) must be an integer >= 1, got {num!r}")
    if not is_int(length) or length < 1:
        raise ConfigError(f"length (steps to generate) must be an integer >= 1, got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r} "
                          "(for the most likely token use top_k=1 or beam search)")
    if not is_int(top_k) or top_k < 0:
        raise ConfigError(f"top_k must be an integer >= 0 (0 = off), got {top_k!r}")
    if vocab_size is not None and top_k > vocab_size:
        raise ConfigError(f"top_k={top_k} exceeds the model's vocabulary of {vocab_size} tokens")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.number)) or not (0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p must lie in (0, 1] (1 = off), got {top_p!r}")
    if not is_int(beam) or beam < 0:
        raise ConfigError(f"beam (beam size) must be an integer >= 0 (0 = sample instead), got {beam!r}")
    if vocab_size is not None and beam > vocab_size:
        raise ConfigError(f"beam={beam} exceeds the model's vocabulary of {vocab_size} tokens")
    if beam and num > beam:
        raise ConfigError(f"beam search returns at most beam={beam} melodies, but num={num} were asked for")
    if not is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


# --- primers ----------------------------------------------------------------------------------

def read_primer(path: str | os.PathLike, *, encoding: MelodyEncoding | None = None,
                num_steps: int | None = None, steps_per_quarter: int = 4) -> tuple[np.ndarray, Melody]:
    """Primer tokens from the melody of a MIDI file: ``(tokens int32 [P], melody)``.

    The melody is the first one :func:`labkit.melody.extract_melodies` finds (one line per
    instrument, the highest note wins, at ``steps_per_quarter``; a melody of any number of
    notes), cut to its first ``num_steps`` steps when given; leading rests are dropped.

    Raises (each naming the file): :class:`~labkit.errors.MidiReadError` for a missing or
    unreadable file, :class:`~labkit.errors.NoNotesError` / :class:`NoMelodyError` when it holds
    no melody, :class:`EncodingError` when a pitch lies outside the encoding's range (21..108).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> tokens, melody = read_primer("primer.mid", num_steps=16)     # doctest: +SKIP
    """
    from labkit.melody import extract_melodies
    from labkit.midi_io import read_midi, require_notes
    from labkit.sample import primer_from_melody

    encoding = encoding or MelodyEncoding()
    name = os.fspath(path)
    if num_steps is not None and (not isinstance(num_steps, (int, np.integer)) or num_steps < 1):
        raise ConfigError(f"primer steps must be an integer >= 1, got {num_steps!r}")
    sequence = require_notes(read_midi(name), name)
    melodies = extract_melodies(sequence, steps_per_quarter=steps_per_quarter, min_notes=1,
                                max_gap_quarters=1e9)
    if not melodies:  # pragma: no cover - extract_melodies raises instead
        raise NoMelodyError("no melody found", name)
    melody = melodies[0].replace(source=name)
    if num_steps is not None:
        melody = melody.replace(events=melody.events[:num_steps])
    pitches = melody.pitches
    if pitches.size and (pitches.min() < encoding.min_pitch or pitches.max() > encoding.max_pitch):
        raise EncodingError(f"primer melody spans pitches {int(pitches.min())}..{int(pitches.max())}, "
                            f"outside the model's range {encoding.min_pitch}..{encoding.max_pitch}", name)
    tokens = primer_from_melody(melody, encoding)
    return tokens, melody


# --- generating -------------------------------------------------------------------------------

def generate_melodies(model, *, num: int = 4, length: int = DEFAULT_LENGTH,
                      temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0, top_p: float = 1.0,
                      primer=None, beam: int = 0, seed: int = 0, encoding: MelodyEncoding | None = None,
                      steps_per_quarter: int = 4, qpm: float = DEFAULT_QPM) -> list[Melody]:
    """Generate ``num`` melodies of ``length`` new steps after a primer.

    Args:
        model: a labkit melody model (:func:`labkit.checkpoint.load_melody_model`, :func:`labkit.train.fit`).
        num: melodies to generate.
        length: steps generated after the primer (128 = 8 bars of 4/4 at 4 steps per quarter).
        temperature: > 0; below 1 sharpens, above 1 flattens the model's distribution.
        top_k: keep only the ``k`` most likely tokens at each step (0 = off).
        top_p: nucleus sampling threshold in ``(0, 1]`` (1 = off).
        primer: int tokens ``[P]`` (e.g. from :func:`read_primer`), or ``None`` for one middle C.
        beam: ``0`` to sample; ``B > 0`` for beam search with ``B`` beams, returning the ``num``
            best (``num <= B``); beam search is deterministic and ignores the sampling settings.
        seed: the seed of the one JAX key all sampling draws from.
        encoding: the model's token encoding (default :class:`MelodyEncoding`, 21..108).
        steps_per_quarter, qpm: the grid and tempo given to each melody (for MIDI and audio).

    Returns a list of ``num`` :class:`~labkit.melody.Melody` (``P + length`` steps each, the
    primer first), named ``melody_001``, ``melody_002``, ... in ``source``. The same model,
    settings and seed give the same melodies.

    Raises :class:`ConfigError` naming a bad setting (see :func:`check_settings`) and
    :class:`EncodingError` for primer tokens outside the model's vocabulary.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> from labkit.models import ModelConfig, make_model
        >>> model = make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0)
        >>> mels = generate_melodies(model, num=2, length=16, seed=3)
        >>> len(mels), mels[0].num_steps, mels[1].source
        (2, 17, 'melody_002')
    """
    from labkit.sample import SampleConfig, beam_search, default_primer, sample

    vocab = int(getattr(model, "vocab_size", 0)) or None
    check_settings(num=num, length=length, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                   seed=seed, vocab_size=vocab)
    encoding = encoding or MelodyEncoding()
    if vocab is not None and encoding.vocab_size != vocab:
        raise ConfigError(f"the model has {vocab} tokens but the encoding {encoding} has {encoding.vocab_size}")
    if primer is None:
        primer = default_primer(encoding)
    primer = np.asarray(primer)
    if primer.ndim != 1 or primer.size == 0:
        raise ConfigError(f"primer must be a non-empty 1-D array of tokens, got shape {primer.shape}")
    if beam:
        tokens, _ = beam_search(model, primer, length=int(length), beam_size=int(beam))
        rows = tokens[0, :num]
    else:
        config = SampleConfig(num_samples=int(num), length=int(length), temperature=float(temperature),
                              top_k=int(top_k), top_p=float(top_p), seed=int(seed))
        rows = sample(model, config, primer)
    return [encoding.decode(row, steps_per_quarter=steps_per_quarter, qpm=float(qpm), source=f"melody_{i:03d}")
            for i, row in enumerate(rows, start=1)]


def melody_stats(melody: Melody) -> dict:
    """A few numbers that tell whether a generated melody is sane.

    Returns ``{"notes", "lowest", "highest", "mean_note_steps", "longest_note_steps",
    "silence_share", "steps"}``: note count, pitch range (``None`` without notes), mean and
    longest note length in steps, and the share of steps where nothing sounds.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> s = melody_stats(Melody.from_notes([60, 64], [0, 4], [2, 8]))
        >>> s["notes"], s["mean_note_steps"], round(s["silence_share"], 2)
        (2, 3.0, 0.33)
    """
    pitches, starts, ends = melody.notes()
    lengths = ends - starts
    sounding = int(lengths.sum())
    steps = melody.num_steps
    return {"notes": int(len(pitches)),
            "lowest": int(pitches.min()) if len(pitches) else None,
            "highest": int(pitches.max()) if len(pitches) else None,
            "mean_note_steps": round(float(lengths.mean()), 3) if len(pitches) else None,
            "longest_note_steps": int(lengths.max()) if len(pitches) else None,
            "silence_share": round(1.0 - sounding / steps, 4) if steps else 1.0,
            "steps": steps}


def write_outputs(melodies: list[Melody], out: str | os.PathLike, *, audio: bool = False,
                  piano_roll: bool = False, settings: dict | None = None, program: int = 0) -> list[dict]:
    """Write each melody as ``<source>.mid`` (``melody_001.mid``, ...) in ``out``, and more on request.

    Args:
        melodies: from :func:`generate_melodies` (file names come from ``melody.source``;
            ``melody_NNN`` by position when it is empty).
        out: output folder (created).
        audio: also write ``<name>.wav`` (:func:`labkit.audio.render`, TimGM6mb SoundFont).
        piano_roll: also write ``<name>.png`` (:func:`labkit.viz.plot_piano_roll`).
        settings: JSON-able settings stored in ``generation.json`` beside the files.
        program: General MIDI program of the notes (0 = piano).

    Returns one dict per melody: ``{"name", "midi", "wav", "png", **melody_stats}`` with the paths
    written (``None`` for files not asked for). Files are written atomically; the same melodies
    give byte-identical MIDI and WAV files.

    ``out`` is checked first (:func:`check_outputs`). A re-run replaces the whole set: the earlier
    ``generation.json`` and every file it lists, and every ``melody_NNN.mid/.wav/.png`` in ``out``, are
    removed before the new files are written, so ``generation.json`` always lists exactly the melody
    files beside it. Other files in ``out`` are left alone.

    Notebook: 05_sampling_studio.ipynb
    """
    from labkit.melody import melody_to_sequence
    from labkit.midi_io import write_midi

    names = [melody.source or f"melody_{i:03d}" for i, melody in enumerate(melodies, start=1)]
    suffixes = (".mid",) + ((".wav",) if audio else ()) + ((".png",) if piano_roll else ())
    out = check_output_folder(out, [SUMMARY_FILE] + [n + s for n in names for s in suffixes])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder ({exc.strerror or exc})", out) from None
    # Replace the whole set: the old summary goes first (no summary ever lists the wrong files), then
    # every file of the earlier run; a crash in between leaves an incomplete set with no summary.
    previous = _previous_set(out)
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    for old in previous:
        (out / old).unlink(missing_ok=True)
    records = []
    for name, melody in zip(names, melodies):
        sequence = melody_to_sequence(melody, program=program)
        record = {"name": name, "midi": str(write_midi(sequence, out / f"{name}.mid")), "wav": None, "png": None}
        if audio:
            from labkit import audio as audio_lib

            record["wav"] = str(audio_lib.write_wav(out / f"{name}.wav", audio_lib.render(sequence)))
        if piano_roll:
            record["png"] = str(_write_piano_roll(sequence, out / f"{name}.png", title=name))
        record.update(melody_stats(melody))
        records.append(record)
    summary = {"settings": settings or {},
               "melodies": [{k: (Path(v).name if k in ("midi", "wav", "png") and v else v) for k, v in r.items()}
                            for r in records]}
    atomic_write(out / SUMMARY_FILE, (json.dumps(summary, indent=1) + "\n").encode("utf-8"))
    return records


#: The file beside the melodies that records the settings and lists the set (see :func:`write_outputs`).
SUMMARY_FILE = "generation.json"
_SET_NAME = re.compile(r"melody_(\d+)\.(mid|wav|png)")


def check_outputs(out: str | os.PathLike, *, num: int, audio: bool = False, piano_roll: bool = False) -> Path:
    """Check before any work that :func:`write_outputs` can write ``num`` melodies in ``out``.

    Raises :class:`ConfigError` naming the path when ``out`` is a file or cannot be written, or a
    folder stands where ``generation.json`` or one of ``melody_001.mid`` .. (and ``.wav``, ``.png``
    when asked for) must go (see :func:`labkit._common.check_output_folder`).

    Notebook: 05_sampling_studio.ipynb
    """
    out = check_output_folder(out, [SUMMARY_FILE])
    wanted = {".mid"} | ({".wav"} if audio else set()) | ({".png"} if piano_roll else set())
    in_way = []
    if out.is_dir():
        try:
            entries = sorted(entry.name for entry in os.scandir(out))
        except OSError as exc:
            raise ConfigError(f"cannot list the output folder ({exc.strerror or exc})", out) from None
        for name in entries:
            match = _SET_NAME.fullmatch(name)
            if match and "." + match.group(2) in wanted and int(match.group(1)) <= num:
                in_way.append(name)
    return check_output_folder(out, in_way)


def _previous_set(out: Path) -> list[str]:
    """Files of an earlier run in ``out``: those its ``generation.json`` lists, and every ``melody_NNN.mid/.wav/.png``.

    Only plain names directly in ``out`` (never a path elsewhere) and only files or links, never folders.
    """
    names = {entry.name for entry in os.scandir(out) if _SET_NAME.fullmatch(entry.name)}
    try:
        listed = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")).get("melodies", [])
        names |= {r.get(k) for r in listed for k in ("midi", "wav", "png") if isinstance(r, dict)}
    except (OSError, ValueError, AttributeError, TypeError):  # no summary, or not one this code wrote
        pass
    return sorted(n for n in names if isinstance(n, str) and n and n == Path(n).name and n not in (".", "..")
                  and (os.path.islink(out / n) or os.path.isfile(out / n)))


def _write_piano_roll(sequence, path: Path, title: str) -> Path:
    """A piano-roll PNG, drawn on a pyplot-free Figure (no backend, nothing left open)."""
    from matplotlib.figure import Figure

    from labkit import viz

    figure = Figure(figsize=(10, 4))
    viz.plot_piano_roll(sequence, ax=figure.add_subplot(), title=title, time_unit="beats")
    figure.tight_layout()
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
