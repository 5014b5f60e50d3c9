"""Your own music: a melody model trained on any folder of MIDI files, and a style model on your own classes.

The source paper (the course's "AI music composition" design) promises users who give the system their own
music and get new music from it, and a link between their own classes and the standard styles. This module
delivers both, for ``python -m labkit train`` and ``python -m labkit style train --class``:

* :func:`train_on_folder`: a folder of MIDI files -> a melody model file that
  ``python -m labkit generate --checkpoint`` reads. The folder goes through ``data prepare``
  (:func:`labkit.prepare.prepare_midi_folder`: one line per file, how many melodies it gave or why
  none); the files (never windows of one file) are split, from the seed, into training and
  validation files; :func:`labkit.train.fit` trains from scratch or fine-tunes the shipped model
  with early stopping on the validation files, and keeps its checkpoints in a run folder beside
  the model (``MODEL.run/``), so the same command resumes an interrupted run.
* :func:`memorization_rate`: how often generated music repeats the training files. A model trained
  on too little music learns to copy it; measured after training on a few generated melodies (8-bar
  and 2-bar spans), it gives the warning of :func:`memorization_warning` (its threshold,
  :data:`MEMORIZATION_WARNING`, was chosen from the measurement in the README's "Train on your own music").
* :func:`user_style_model`: a style model (:class:`labkit.style.model.StyleModel`) on the user's
  labelled folders, its cross-validated accuracy (:func:`labkit.style.logreg.cross_validate_logreg`),
  and how the shipped style model sees each user class: the share of the class's tunes it gives to
  each corpus style (the paper's "user classification" beside the standard one).

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from labkit._common import atomic_write, check_output_folder, display_name, find_midi_files
from labkit.errors import ConfigError, CorpusError, LabkitError
from labkit.melody import Melody

#: Bars of the spans :func:`memorization_rate` compares (8 bars: a folk tune's strain, a song's verse).
SPAN_BARS = 8
#: Bars of the spans behind the warning: 2. Measured (README, "Train on your own music"; 8 melodies of 16 bars at
#: ``generate``'s temperature 0.8, models trained from scratch for 1500 steps without early stopping): a model that
#: learned one Irish tune to 0.13 bits/event copies it in 63% of its 2-bar spans but only 5% of its 8-bar spans
#: (a sampled melody strays from a copy within a few bars), while models on 3, 30 and 300 tunes copy at most 6%
#: of their 2-bar spans and the shipped model 0.4% of 300 tunes'. So 8-bar copies are reported, 2-bar ones warned on.
WARNING_BARS = 2
#: Above this share of generated :data:`WARNING_BARS`-bar spans found verbatim in the training files, ``train``
#: warns that the folder is too small to learn from without copying it (between the 6% and 63% measured above).
MEMORIZATION_WARNING = 0.2
#: Melodies generated (of :data:`MEMORIZATION_STEPS` steps each) to measure the memorization after training.
MEMORIZATION_MELODIES = 8
#: Steps of each of those melodies: 16 bars of 4/4 at 4 steps per quarter, so that 8-bar spans start at many notes.
MEMORIZATION_STEPS = 256
#: Share of the files (at least one) held out to validate on, when there are two files or more.
VALID_FRACTION = 0.2


# --- memorization ---------------------------------------------------------------------------------

def _steps_per_bar(melody: Melody) -> int:
    return max(1, int(round(melody.steps_per_quarter * 4 * melody.numerator / melody.denominator)))


def _spans(events: np.ndarray, length: int, transpose: bool) -> list[bytes]:
    """Every window of ``length`` steps of ``events`` that starts at a note-on, as bytes (keys of a set)."""
    events = np.asarray(events, dtype=np.int16)
    onsets = np.flatnonzero(events >= 0)
    out = []
    for start in onsets[onsets + length <= len(events)]:
        window = events[start:start + length].copy()
        if transpose:    # pitches relative to the span's first note: a copy in another key is a copy
            notes = window >= 0
            window[notes] -= window[0]
        out.append(window.tobytes())
    return out


def memorization_rate(generated_melodies: Sequence[Melody], training_melodies: Sequence[Melody],
                      bars: int = SPAN_BARS, *, transpose: bool = True) -> float:
    """The share of the generated ``bars``-bar spans that occur verbatim in the training melodies.

    A span is the music of ``bars`` bars (of the generated melody's time signature) that starts at
    one of its notes: the pitch and the duration of every note and rest in it, as the melody's
    step-by-step events (one per step: a note-on's pitch, hold, or note-off), so two spans are
    equal exactly when their pitch/duration sequences are (the last note cut at the span's end).
    Every note of every generated melody that has ``bars`` bars after it starts a span; each
    is looked up among all spans of the same length of the training melodies. With ``transpose``
    (the default) pitches count relative to the span's first note, so a copy in another key counts
    (training transposes the tunes by up to 5 semitones, so a model copies in any key).

    Args:
        generated_melodies, training_melodies: :class:`~labkit.melody.Melody` lists on one time grid.
        bars: span length in bars (8).
        transpose: compare intervals (True) or absolute pitches (False).

    Returns the share in ``[0, 1]``; ``nan`` when no generated melody is ``bars`` bars long.

    Example:
        >>> tune = Melody.from_notes(list(range(60, 76)), list(range(0, 64, 4)), list(range(4, 68, 4)))
        >>> other = Melody.from_notes([62, 60] * 8, list(range(0, 64, 4)), list(range(4, 68, 4)))
        >>> memorization_rate([tune], [tune], bars=2), memorization_rate([other], [tune], bars=2)
        (1.0, 0.0)

    Notebook: 09_judging_generated_music.ipynb
    """
    if int(bars) < 1:
        raise ConfigError(f"bars must be at least 1, got {bars}")
    known: dict[int, set[bytes]] = {}
    found = total = 0
    for melody in generated_melodies:
        length = int(bars) * _steps_per_bar(melody)
        if length not in known:
            known[length] = {s for t in training_melodies for s in _spans(t.events, length, transpose)}
        spans = _spans(melody.events, length, transpose)
        total += len(spans)
        found += sum(s in known[length] for s in spans)
    return found / total if total else float("nan")


# --- the user's folder as training data -----------------------------------------------------------

def split_files(files: Sequence[str], seed: int = 0, valid_fraction: float = VALID_FRACTION) -> set[str]:
    """The files held out to validate on: about ``valid_fraction`` of them (at least one, never all), by seed.

    One file gives no validation file (then there is no early stopping). The draw depends only on the
    seed and the set of names, not on their order.

    >>> sorted(split_files(["a.mid", "b.mid", "c.mid", "d.mid", "e.mid"], seed=0)) == \\
    ...     sorted(split_files(["e.mid", "d.mid", "c.mid", "b.mid", "a.mid"], seed=0))
    True
    >>> len(split_files(["a.mid", "b.mid"])), len(split_files(["a.mid"]))
    (1, 0)

    Notebook: 09_judging_generated_music.ipynb
    """
    names = sorted(set(files))
    if len(names) < 2:
        return set()
    count = min(len(names) - 1, max(1, int(round(valid_fraction * len(names)))))
    order = np.random.default_rng([int(seed), 11]).permutation(len(names))
    return {names[i] for i in order[:count]}


def run_folder(out: str | os.PathLike) -> Path:
    """The run folder of a model file: ``MODEL.npz`` -> ``MODEL.run`` (checkpoints, the prepared data, the report).

    >>> run_folder("models/mine.npz").as_posix()
    'models/mine.run'

    Notebook: 09_judging_generated_music.ipynb
    """
    return Path(out).with_suffix(".run")


def _check_model_out(out: Path) -> None:
    """Refuse, before any work, a model path ``train`` cannot write."""
    if out.suffix.lower() != ".npz":
        raise ConfigError("the model file must end in .npz (its run folder, for resuming, is named after it)", out)
    if out.is_dir():
        raise ConfigError("is a folder, where train must write the model file", out)
    check_output_folder(out.parent, what="model folder")
    run = run_folder(out)
    if os.path.lexists(run) and not run.is_dir():
        raise ConfigError("exists and is not a folder (train keeps its checkpoints here)", run)


def _user_melodies(midi_dir: Path, run: Path, say: Callable[[str], None]):
    """``data prepare`` the folder into ``run/dataset``; ``(melodies, files)``: each melody and its file."""
    from labkit.corpus import load_manifest
    from labkit.data import load_melodies
    from labkit.encoding import MelodyEncoding
    from labkit.prepare import prepare_midi_folder

    if not midi_dir.exists():
        raise ConfigError("no such folder", midi_dir)
    if not midi_dir.is_dir():
        raise ConfigError("not a folder (give the folder that holds your MIDI files)", midi_dir)
    report = prepare_midi_folder(midi_dir, run / "dataset", style="user", collection="user",
                                 progress=lambda result: say(result.line()))
    if not report.melodies:
        raise CorpusError(f"none of its {len(report.files)} MIDI file(s) gave a melody (see the lines above)",
                          midi_dir)
    mels = load_melodies(run / "dataset", use_cache=False)
    source = dict(zip(*(load_manifest(run / "dataset")[c] for c in ("id", "source"))))
    encoding = MelodyEncoding()
    keep = []
    for i in range(len(mels)):
        pitches = mels.events_of(i)[mels.events_of(i) >= 0]
        if pitches.size and encoding.min_pitch <= pitches.min() and pitches.max() <= encoding.max_pitch:
            keep.append(i)
        else:
            say(f"left out  {display_name(source[str(mels.ids[i])])}: a melody with pitches outside "
                f"{encoding.min_pitch}..{encoding.max_pitch}, the model's range")
    if not keep:
        raise CorpusError("no melody within the model's pitch range", midi_dir)
    mels = mels.subset(np.array(keep))
    return mels, [str(source[str(i)]) for i in mels.ids]


def _digest(mels, files, extra: dict) -> str:
    h = hashlib.sha256(np.ascontiguousarray(mels.events).tobytes())
    h.update(np.ascontiguousarray(mels.offsets).tobytes())
    h.update(json.dumps([files, extra], sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:20]


def personal_configs(start: str, steps: int | None, minutes: float | None, seed: int):
    """``(model_config or None, train_config)`` of ``train``: ``None`` means the shipped model's own sizes.

    ``scratch`` trains the shipped model's sizes (:data:`labkit.train_shipped.SHIPPED_MODEL`) at the shipped
    learning rate; ``shipped`` fine-tunes at a third of it. ``steps`` defaults to 1500 (scratch) or 500
    (shipped); with ``minutes`` the steps are unbounded (the clock and early stopping end the run).
    Under ``LABKIT_FAST`` everything is tiny (a 16-unit model, batches of 8 windows of 32 steps).

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit import env
    from labkit.models import ModelConfig
    from labkit.train import TrainConfig
    from labkit.train_shipped import SHIPPED_MODEL

    if start not in ("shipped", "scratch"):
        raise ConfigError(f"--from must be 'shipped' or 'scratch', got {start!r}")
    scratch = start == "scratch"
    model_config = (env.fast(SHIPPED_MODEL, ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.1))
                    if scratch else None)
    default_steps = env.fast(1500 if scratch else 500, 20)
    num_steps = int(steps) if steps is not None else (10_000_000 if minutes is not None else default_steps)
    eval_every = env.fast(50, 5)
    config = TrainConfig(seed=int(seed), num_steps=num_steps, batch_size=env.fast(32, 8), seq_len=env.fast(128, 32),
                         learning_rate=3e-3 if scratch else 1e-3, warmup_steps=min(env.fast(50, 2), num_steps),
                         end_lr_ratio=0.05, eval_every=max(1, min(eval_every, num_steps)), max_eval_batches=None,
                         patience=env.fast(5, 3), log_every=max(1, min(10, num_steps)), progress=True)
    return model_config, config


class _TimeUp(KeyboardInterrupt):
    """Raised from the data source when ``--minutes`` have passed: :func:`labkit.train.fit` then writes its
    checkpoint as it does on Ctrl-C (and re-raises), so the run stops cleanly and can be resumed."""


def _timed(source, deadline: float | None):
    if deadline is None:
        return source

    def timed_source(epoch):
        for batch in source(epoch):
            if time.monotonic() >= deadline:
                raise _TimeUp()
            yield batch
    return timed_source


def train_on_folder(midi_dir: str | os.PathLike, out: str | os.PathLike, *, start: str = "shipped",
                    steps: int | None = None, minutes: float | None = None, seed: int = 0,
                    log: Callable[[str], None] | None = print, measure: bool = True,
                    patience: int | None = None) -> dict:
    """Train (``start="scratch"``) or fine-tune (``"shipped"``) a melody model on a folder of MIDI files.

    Steps: check ``out`` (it must end in ``.npz``); ``data prepare`` the folder into the run folder
    (:func:`run_folder`; each file's line goes to ``log``); hold out validation files (:func:`split_files`);
    train with :func:`labkit.train.fit` (progress bar, early stopping on the validation files,
    checkpoints in the run folder: the same call again resumes, and continues a finished run no
    further); save the best model to ``out`` (:func:`labkit.checkpoint.save_model`: what
    ``generate --checkpoint`` loads); generate :data:`MEMORIZATION_MELODIES` melodies and measure
    :func:`memorization_rate` against all the folder's melodies. A fine-tuned model keeps the shipped
    parameters unless training improves their validation loss.

    Args:
        midi_dir: folder searched recursively for ``.mid``, ``.midi``, ``.kar``.
        out: the model file (``.npz``); its run folder is ``out`` with the suffix ``.run``.
        start: ``"shipped"`` or ``"scratch"``.
        steps: optimizer steps at most (default: :func:`personal_configs`); ``minutes``: stop after
            this much training time instead (give one of the two).
        seed: the validation split, parameters, batches and the melodies generated to measure.
        log: called with each line of the report (``None``: silent).
        measure: generate and measure the memorization (False: skip it).
        patience: evaluations without improvement before stopping (``None``: :func:`personal_configs`; 0: never
            stop early, as in the measurement behind :data:`MEMORIZATION_WARNING`).

    Returns the report written to ``out.run/report.json``: files, melodies, split, steps, history
    summary, ``memorization`` and ``warning`` (``None`` or the warning's text).

    Raises:
        ConfigError: no such folder, a bad ``out``, a run folder holding a run on other files or
            settings. CorpusError: no MIDI file, or no file gave a melody.

    Example:
        >>> train_on_folder("my_midi", "models/mine.npz", steps=300)   # doctest: +SKIP

    Notebook: 09_judging_generated_music.ipynb
    """
    import jax
    from flax import nnx

    from labkit.checkpoint import load_checkpoint, load_melody_model, read_meta, save_model
    from labkit.encoding import MelodyEncoding
    from labkit.models import make_model
    from labkit.train import evaluate_model, fit, train_source, valid_source, workdir_paths

    say = log or (lambda line: None)
    if steps is not None and minutes is not None:
        raise ConfigError("give --steps or --minutes, not both")
    if minutes is not None and not (minutes > 0 and math.isfinite(minutes)):
        raise ConfigError(f"minutes must be a number > 0, got {minutes!r}")
    out, midi_dir = Path(out), Path(midi_dir)
    _check_model_out(out)
    run = run_folder(out)
    model_config, cfg = personal_configs(start, steps, minutes, seed)
    mels, files = _user_melodies(midi_dir, run, say)

    held = split_files(files, seed)
    splits = np.array(["valid" if f in held else "train" for f in files])
    train_set, valid_set = mels.subset(splits == "train"), mels.subset(splits == "valid")
    shipped = None
    if model_config is None:
        shipped, model_config = load_melody_model(encoding=MelodyEncoding())
    identity = {"from": start, "seed": int(seed), "model_config": model_config.to_dict(),
                "data": _digest(mels, files, {"valid": sorted(held)})}
    run_json = run / "run.json"
    if run_json.is_file():
        try:
            before = json.loads(run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before != identity:
            raise ConfigError("holds a run on other files or settings (--from, --seed, the folder's melodies); "
                              "delete this folder to start afresh, or choose another --out", run)
    atomic_write(run_json, (json.dumps(identity, indent=1) + "\n").encode("utf-8"))
    n_files = len(set(files))
    say(f"{len(mels)} melodies from {n_files} file(s): {len(train_set)} for training, {len(valid_set)} "
        f"for validation ({len(held)} file(s) held out{', none: one file, so no early stopping' if not held else ''})")

    cfg = dataclasses.replace(cfg, batch_size=min(cfg.batch_size, len(train_set)),
                              patience=cfg.patience if patience is None else int(patience))
    valid_batches = valid_source(valid_set, cfg) if len(valid_set) else None
    start_loss = None
    if shipped is not None and valid_batches is not None:
        start_loss = evaluate_model(shipped, valid_batches, pad_time_to=cfg.pad_time_to)["loss"]
    ckpt_path, best_path = workdir_paths(run)
    resumed = 0
    if ckpt_path.exists():
        resumed = int(read_meta(ckpt_path).get("progress", {}).get("step", 0))
        say(f"resuming the run in {display_name(run)} from step {resumed}")
    deadline = time.monotonic() + 60.0 * minutes if minutes is not None else None
    timed_out = False
    try:
        model, history = fit(model_config, cfg, _timed(train_source(train_set, cfg), deadline), valid_batches,
                             workdir=run, resume=True, initial_model=shipped)
    except _TimeUp:
        timed_out = True
        model = make_model(model_config, 0)
        template = {"params": nnx.state(model, nnx.Param)}
        meta = read_meta(ckpt_path)
        use = best_path if meta["progress"].get("best_step") is not None and best_path.exists() else ckpt_path
        if valid_batches is not None and use == best_path:   # the last parameters, if better than the best
            last = make_model(model_config, 0)
            nnx.update(last, load_checkpoint(ckpt_path, {"params": nnx.state(last, nnx.Param)})[0]["params"])
            if evaluate_model(last, valid_batches, pad_time_to=cfg.pad_time_to)["loss"] < meta["progress"]["best_loss"]:
                use = ckpt_path
        nnx.update(model, load_checkpoint(use, template)[0]["params"])
        history = meta["progress"]["history"]
    progress = read_meta(ckpt_path)["progress"] if ckpt_path.exists() else {}
    step = int(progress.get("step", 0))
    best = [r for r in history if r.get("valid_loss") is not None]
    best_loss = min((r["valid_loss"] for r in best), default=None)
    kept_shipped = False
    if start_loss is not None and (best_loss is None or best_loss >= start_loss - cfg.min_delta):
        nnx.update(model, jax.tree_util.tree_map(lambda x: x, nnx.state(shipped, nnx.Param)))
        kept_shipped, best_loss = True, start_loss
    how = ("time up" if timed_out else "stopped early (validation loss no longer improving)"
           if progress.get("stopped_early") else "done")
    say(f"trained {step} steps ({how})" + (f"; best validation {best_loss / math.log(2):.3f} bits/event"
                                            if best_loss is not None else "")
        + ("; the shipped model stays better on your validation files, so it is kept" if kept_shipped else ""))
    report = {"midi_dir": display_name(midi_dir), "out": display_name(out), "from": start, "seed": int(seed),
              "files": n_files, "melodies": len(mels), "train_melodies": len(train_set),
              "valid_melodies": len(valid_set), "valid_files": sorted(display_name(f) for f in held),
              "steps": step, "resumed_from": resumed, "stopped_early": bool(progress.get("stopped_early")),
              "timed_out": timed_out, "best_valid_bits": None if best_loss is None else best_loss / math.log(2),
              "start_valid_bits": None if start_loss is None else start_loss / math.log(2),
              "kept_shipped": kept_shipped, "model_config": model_config.to_dict(),
              "train_config": cfg.to_dict(), "memorization": None, "warning": None}
    save_model(out, model, model_config, {"personal": {k: report[k] for k in (
        "from", "seed", "files", "melodies", "steps", "best_valid_bits", "kept_shipped")}})
    say(f"model written to {display_name(out)} (python -m labkit generate --checkpoint {display_name(out)})")
    if measure:
        report["memorization"] = found = measure_memorization(model, mels.melodies(), seed=seed)
        say(f"memorization: of the spans of {MEMORIZATION_MELODIES} generated melodies ({MEMORIZATION_STEPS} steps, "
            f"temperature {found['temperature']:g}, seed {seed}), "
            + " and ".join(f"{_percent(r)} of the {b}-bar ones" for b, r in found["rates"].items())
            + " repeat your files verbatim (in any key)")
        report["warning"] = memorization_warning(found["rates"][str(WARNING_BARS)])
        if report["warning"]:
            say(report["warning"])
    atomic_write(run / "report.json", (json.dumps(report, indent=1) + "\n").encode("utf-8"))
    return report


def _percent(rate: float) -> str:
    return "n/a" if rate != rate else f"{100 * rate:.0f}%"


def measure_memorization(model, training_melodies: Sequence[Melody], *, seed: int = 0,
                         num: int = MEMORIZATION_MELODIES, length: int = MEMORIZATION_STEPS,
                         temperature: float | None = None, bars: Sequence[int] = (SPAN_BARS, WARNING_BARS)) -> dict:
    """Generate ``num`` melodies of ``length`` steps from ``model`` and measure :func:`memorization_rate`.

    ``temperature`` defaults to ``generate``'s (:data:`labkit.generate.DEFAULT_TEMPERATURE`): the music a
    user gets. Returns ``{"rate": the rate in bars[0]-bar spans, "rates": {bars: rate}, "melodies", "length",
    "temperature", "seed"}`` (``rates`` keyed by the number of bars as text, as in JSON).

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.generate import DEFAULT_TEMPERATURE, generate_melodies

    temperature = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    generated = generate_melodies(model, num=num, length=length, temperature=temperature, seed=seed)
    rates = {str(int(b)): memorization_rate(generated, training_melodies, bars=int(b)) for b in bars}
    return {"rate": rates[str(int(bars[0]))], "rates": rates, "melodies": num, "length": length,
            "temperature": temperature, "seed": int(seed)}


def memorization_warning(rate: float) -> str | None:
    """The warning of ``train`` for a share of copied :data:`WARNING_BARS`-bar spans, or None below the threshold.

    >>> memorization_warning(0.1) is None, memorization_warning(float("nan")) is None
    (True, True)
    >>> memorization_warning(0.63)[:60]
    'warning: the folder is too small to learn from without copyi'

    Notebook: 09_judging_generated_music.ipynb
    """
    if not rate > MEMORIZATION_WARNING:     # NaN too: nothing measured
        return None
    return (f"warning: the folder is too small to learn from without copying it: {_percent(rate)} of the "
            f"generated {WARNING_BARS}-bar spans are copies of your files (above {_percent(MEMORIZATION_WARNING)}); "
            "add more music, or train fewer steps")


# --- a style model on the user's own classes ------------------------------------------------------

def parse_class(text: str) -> tuple[str, str]:
    """``"NAME=DIR"`` -> ``(NAME, DIR)``; a :class:`ConfigError` for anything else.

    >>> parse_class("reels=music/reels")
    ('reels', 'music/reels')

    Notebook: 09_judging_generated_music.ipynb
    """
    name, sep, folder = str(text).partition("=")
    name = name.strip()
    if not sep or not name or not folder:
        shown = text if len(str(text)) <= 40 else str(text)[:37] + "..."
        raise ConfigError(f"--class must be NAME=DIR (a class name, '=', its folder), got {shown!r}")
    return name, folder


def user_style_model(classes: Mapping[str, str | os.PathLike], out: str | os.PathLike, *, folds: int = 5,
                     seed: int = 0, l2: float | None = None, steps: int = 300, ngram_dims: int | None = None,
                     log: Callable[[str], None] | None = print) -> dict:
    """Train a style model on the user's labelled folders and see them through the shipped style model.

    Each folder's MIDI files (searched recursively) give one tune each: the melody the style model
    scores (:func:`labkit.style.scoring.melody_from_file`, the longest line). Then: the features
    (:func:`labkit.style.features.feature_matrix`, the shipped settings), ``folds``-fold stratified
    cross-validation by tune (:func:`labkit.style.logreg.cross_validate_logreg`; fewer folds when a
    class has fewer tunes, none when one has a single tune), the final
    :class:`~labkit.style.model.StyleModel` on every tune, and the shipped model's view: for each
    user class the share of its tunes the shipped model gives to each corpus style. The model is
    saved in ``out`` with ``metrics.json`` (the figures) and ``user_classes.json`` (the table and
    each file's line), so ``style score --model out`` uses it.

    Args:
        classes: ``{class name: folder}``, at least two.
        out: the model folder (new, empty, or an earlier style model's).
        folds, seed, l2, steps, ngram_dims: cross-validation and the logistic regression
            (``None``: the shipped model's settings).
        log: called with each line of the report.

    Returns the figures (``styles``, ``tunes``, ``cv``, ``shipped_view``, ``files``).

    Raises ConfigError (fewer than two classes, a folder that is not one) and CorpusError
    (a class without a readable tune), before any model is fitted.

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.style import features as F
    from labkit.style.logreg import cross_validate_logreg
    from labkit.style.model import METRICS_FILE, StyleModel, _check_model_folder, load_style_model
    from labkit.style.scoring import DEFAULT_L2, DEFAULT_NGRAM_DIMS, melody_from_file

    say = log or (lambda line: None)
    l2 = DEFAULT_L2 if l2 is None else float(l2)
    ngram_dims = DEFAULT_NGRAM_DIMS if ngram_dims is None else int(ngram_dims)
    if len(classes) < 2:
        raise ConfigError(f"a style model needs at least two classes (--class NAME=DIR, twice or more), "
                          f"got {len(classes)}")
    check_output_folder(out, what="model folder")
    _check_model_folder(out, {"user_classes.json": b""})
    melodies, labels, lines = [], [], []
    for name, folder in classes.items():
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"the folder of class {name!r} " + ("is not a folder" if folder.exists()
                                                                  else "does not exist"), folder)
        count = 0
        for path, problem in find_midi_files(folder):
            if problem is None:
                try:
                    melodies.append(melody_from_file(path))
                    labels.append(name)
                    count += 1
                    lines.append(f"ok       {name}: {display_name(path)}")
                    continue
                except LabkitError as exc:
                    problem = exc.problem
            lines.append(f"skipped  {name}: {display_name(path)}: {display_name(problem)}")
        if not count:
            for line in lines:
                say(line)
            raise CorpusError(f"class {name!r} has no readable tune (no MIDI file here gave a melody)", folder)
    for line in lines:
        say(line)
    styles = tuple(sorted(classes))
    y = np.array([styles.index(s) for s in labels], dtype=np.int32)
    counts = {s: int((y == i).sum()) for i, s in enumerate(styles)}
    say("tunes per class: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    X, names = F.feature_matrix(melodies, "processed", None, ngram_dims=ngram_dims)
    k = min(int(folds), min(counts.values()))
    cv = None
    if k >= 2:
        result = cross_validate_logreg(X, y, k=k, seed=seed, l2=l2, steps=steps, num_classes=len(styles),
                                       names=names)
        cv = {"folds": k, "balanced_accuracy": result["balanced_accuracy"],
              "balanced_accuracy_std": result["balanced_accuracy_std"], "accuracy": result["accuracy"],
              "confusion": np.asarray(result["confusion"]).tolist()}
        say(f"{k}-fold cross-validated accuracy: {cv['accuracy']:.3f} (balanced {cv['balanced_accuracy']:.3f} "
            f"+- {cv['balanced_accuracy_std']:.3f}, {len(y)} tunes)")
    else:
        say("no cross-validation: every class needs at least 2 tunes (the smallest has "
            f"{min(counts.values())})")
    model = StyleModel.fit_features(X, labels, names, styles=styles, ngram_dims=ngram_dims, l2=l2, steps=steps,
                                    val_fraction=0.1 if min(counts.values()) >= 5 else 0.0, seed=seed)
    shipped = load_style_model()
    verdicts = np.asarray(shipped.predict_proba(melodies)).argmax(1)
    view = {s: {c: float(np.mean(verdicts[y == i] == j)) for j, c in enumerate(shipped.styles)}
            for i, s in enumerate(styles)}
    say(shipped_view_table(view, counts))
    figures = {"styles": list(styles), "kind": "StyleModel", "user_classes": {s: display_name(classes[s])
                                                                             for s in styles},
               "tunes": counts, "cv": cv, "shipped_styles": list(shipped.styles), "shipped_view": view,
               "settings": {"variant": "processed", "ngram_dims": ngram_dims, "l2": l2, "steps": steps,
                            "seed": int(seed), "temperature": float(model.temperature)},
               "files": lines}
    document = (json.dumps(figures, indent=1) + "\n").encode("utf-8")
    model.save(out, extra_files={METRICS_FILE: document, "user_classes.json": document})
    say(f"style model written to {display_name(out)} (python -m labkit style score --model {display_name(out)} ...)")
    return figures


def shipped_view_table(view: Mapping[str, Mapping[str, float]], counts: Mapping[str, int] | None = None) -> str:
    """The shipped model's view of the user classes as a text table: one row per class, shares per style.

    >>> print(shipped_view_table({"reels": {"german": 0.25, "irish": 0.75}}, {"reels": 4}))
    how the shipped style model sees each class (share of its tunes):
    class  tunes  german  irish
    reels      4    0.25   0.75

    Notebook: 09_judging_generated_music.ipynb
    """
    classes = list(view)
    styles = list(next(iter(view.values()))) if view else []
    width = max([5] + [len(c) for c in classes])
    head = f"{'class':<{width}}  tunes  " + "  ".join(f"{s:>{max(5, len(s))}}" for s in styles)
    rows = [f"{c:<{width}}  {(counts or {}).get(c, ''):>5}  "
            + "  ".join(f"{view[c][s]:>{max(5, len(s))}.2f}" for s in styles) for c in classes]
    return "\n".join(["how the shipped style model sees each class (share of its tunes):", head.rstrip(), *rows])
