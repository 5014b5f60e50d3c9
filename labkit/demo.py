"""``make demo``: the course's main job, end to end, written to ``out/``.

Each stage adds a section to ``out/report.md`` and writes its files beside it:

1. corpus: tunes per collection and style, pitch and length distributions (PNG),
   one example melody as MIDI, WAV and a piano-roll PNG.
2. model: by default the shipped melody LSTM (``labkit/assets/melody_lstm.npz``) is
   fine-tuned on one style (``--style``, default Chinese folk songs) for a couple of
   minutes; with ``--train`` a small LSTM is trained from scratch on that style instead.
   Bits per event and per note on the style's test split, before and after, the settings,
   a training curve (``model_training.png``) and the model (``model.npz``).
3. generation: ``--num`` melodies from that model, primed with the first bar of a test
   tune, as MIDI, WAV and piano-roll PNG in ``out/generated/``, with the sampling settings.
4. style: the shipped style model's index of the generated melodies beside real held-out
   tunes, on the bipolar axis (``style_axis.png``; :mod:`labkit.style.demo`).
5. generation to order: the shipped conditioned model (:mod:`labkit.conditioned`) writes a few whole
   tunes per style asked for (default: the five main styles), each in its style's typical metre and key,
   into ``to_order/<style>/``; the report gives per style how often the style model's verdict is that
   style and the judge's overlap areas with the style's real test tunes (:mod:`labkit.judge`).

With ``LABKIT_FAST=1`` (or ``quick=True``) every stage shrinks to seconds.

Notebook: 00_welcome_and_setup.ipynb (the model: 04_lstm_melody_model.ipynb;
generation: 05_sampling_studio.ipynb)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labkit._common import atomic_write, check_output_folder


@dataclass
class Report:
    """A Markdown report built section by section."""

    out: Path
    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.lines += ["", f"## {title}", ""]

    def add(self, *lines: str) -> None:
        self.lines += list(lines)

    def table(self, header: list[str], rows: list[list]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(str(c) for c in row) + " |")

    def write(self) -> Path:
        text = "\n".join(["# labkit demo report", *self.lines]) + "\n"
        return atomic_write(self.out / "report.md", text.encode("utf-8"))


def corpus_stage(report: Report, *, seed: int = 0) -> None:
    """Corpus statistics, distributions and one example tune (MIDI, WAV, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labkit import audio, viz
    from labkit.corpus import corpus_root, load_manifest, read_tune
    from labkit.data import load_melodies
    from labkit.melody import melody_to_sequence
    from labkit.midi_io import write_midi

    root = corpus_root()
    manifest = load_manifest(root)
    report.section("1. The corpus")
    report.add(f"{len(manifest):,} tunes from {manifest['collection'].nunique()} collections, read from `{root}`.", "")
    rows = []
    for (collection, style), group in manifest.groupby(["collection", "style"]):
        rows.append([collection, style, len(group), int(group["notes"].sum()),
                     f"{group['duration_seconds'].sum() / 3600:.1f}"])
    report.table(["collection", "style", "tunes", "notes", "hours"], rows)

    start = time.perf_counter()
    mels = load_melodies(root)
    seconds = time.perf_counter() - start
    report.add("", f"Melodies loaded (from the cache when present) in {seconds:.1f} s: {len(mels):,} tunes, "
               f"{len(mels.skipped or {})} skipped.")

    styles = sorted(set(mels.styles))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for style in styles:
        sub = mels.subset(mels.styles == style)
        pitches = sub.events[sub.events >= 0]
        axes[0].hist(pitches, bins=np.arange(30, 100) - 0.5, histtype="step", density=True, label=style)
        notes_per_tune = [int((sub.events_of(i) >= 0).sum()) for i in range(len(sub))]
        axes[1].hist(notes_per_tune, bins=np.logspace(0.7, 3, 40), histtype="step", density=True, label=style)
    axes[0].set(xlabel="MIDI pitch", ylabel="share of notes", title="Pitch distribution by style")
    axes[1].set(xscale="log", xlabel="notes per tune", ylabel="density", title="Tune length by style")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report.out / "corpus_distributions.png", dpi=120)
    plt.close(fig)
    report.add("", "![pitch and length distributions](corpus_distributions.png)")

    rng = np.random.default_rng(seed)
    kinder = manifest[manifest["subset"] == "kinder0"]
    pool = kinder if len(kinder) else manifest
    row = pool.iloc[int(rng.integers(len(pool)))]
    sequence = read_tune(row, root)
    write_midi(sequence, report.out / "example_tune.mid")
    wave = audio.render(sequence)
    audio.write_wav(report.out / "example_tune.wav", wave)
    fig = viz.plot_piano_roll(sequence, title=f"{row['title']} ({row['id']})").figure
    fig.savefig(report.out / "example_tune.png", dpi=120)
    plt.close(fig)
    report.add("", f"Example tune: **{row['title']}** (`{row['id']}`, {row['collection']}, {row['style']}, "
               f"{row['meter']}, {row['key']}): `example_tune.mid`, `example_tune.wav` "
               f"({len(wave) / audio.DEFAULT_SAMPLE_RATE:.1f} s), `example_tune.png`.")
    _ = melody_to_sequence  # used by later stages


#: Default style of the model stage: Chinese folk songs (Essen ``han1``/``han2``) differ most
#: from the rest of the corpus (pentatonic), so fine-tuning on them shows a clear gain.
DEFAULT_STYLE = "chinese"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the model and generation stages (see :func:`demo_settings`).

    Attributes:
        train: ``True``: train a small LSTM from scratch; ``False``: fine-tune the shipped model.
        steps: optimizer steps (``None``: 600 to fine-tune, 400 from scratch).
        batch_size, seq_len: training windows; eval_every: evaluation period.
        max_tunes: use at most this many tunes per split (``None``: all).
        hidden_size, num_layers: the from-scratch model.
        learning_rate: peak learning rate (``None``: 5e-4 to fine-tune, 3e-3 from scratch).
        num, length, temperature, top_k, top_p: generation (see :func:`labkit.generate.generate_melodies`).
        order_styles, order_num, order_max_steps: generation to order: the styles asked for, tunes per style,
            the cap of a tune in steps; order_real: real test tunes per style the judge compares with.
        primer_steps: steps of the test tune that prime the generation.
        audio: render WAV files.
        progress: show a progress bar while training.
        quick: these are the quick settings (for the report).
    """

    train: bool = False
    steps: int | None = None
    batch_size: int = 32
    seq_len: int = 128
    eval_every: int = 25
    max_tunes: int | None = None
    hidden_size: int = 128
    num_layers: int = 1
    learning_rate: float | None = None
    num: int = 8
    length: int = 256
    temperature: float = 0.8      # labkit.generate.DEFAULT_TEMPERATURE (see there why)
    top_k: int = 0
    top_p: float = 1.0
    primer_steps: int = 16
    audio: bool = True
    progress: bool = True
    quick: bool = False
    order_styles: tuple = ("chinese", "chorale", "fiddle", "german", "irish")
    order_num: int = 12
    order_max_steps: int = 1024
    order_real: int = 100


def demo_settings(*, train: bool = False, quick: bool | None = None, **overrides) -> DemoSettings:
    """The demo's settings: full (a few minutes on 2 CPU cores) or quick (seconds; ``LABKIT_FAST``).

    Fine-tuning (default): 600 steps of 32 x 128 events at learning rate 5e-4 (40 s on 2 CPU cores), then 8
    melodies of 256 steps: the style model called 16 of 16 such melodies Chinese, against 11 of 16 after 150
    steps with 128-step melodies (the settings before; seed 0). From scratch
    (``train=True``, or when the shipped model is missing): a 1 x 128 LSTM, 400 steps at 3e-3. Quick: 3 steps of 4 x 32, 24 tunes per
    split, 2 melodies of 32 steps. ``overrides`` replace single fields (``None`` values are ignored).

    Example:
        >>> demo_settings(quick=True).steps, demo_settings(steps=10).steps
        (3, 10)
    """
    from labkit import env

    quick = env.FAST if quick is None else quick
    values: dict = {"train": train}
    if train:
        values.update(eval_every=50)
    if quick:
        values.update(steps=3, batch_size=4, seq_len=32, eval_every=3, max_tunes=24, hidden_size=32,
                      num=2, length=32, progress=False, quick=True, order_styles=("irish", "chinese"),
                      order_num=2, order_max_steps=192, order_real=12)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DemoSettings(**values)


def _schedule(settings: DemoSettings, from_scratch: bool) -> tuple[int, float]:
    """``(steps, learning_rate)``: the settings' own, else the defaults of fine-tuning or training from scratch."""
    steps = settings.steps if settings.steps is not None else (400 if from_scratch else 600)
    rate = settings.learning_rate if settings.learning_rate is not None else (3e-3 if from_scratch else 5e-4)
    return steps, rate


def _first(mels, n):
    return mels if n is None or len(mels) <= n else mels.subset(np.arange(n))


def model_stage(report: Report, settings: DemoSettings, *, style: str = DEFAULT_STYLE, seed: int = 0):
    """Fine-tune the shipped model on ``style`` (or train one from scratch); returns ``(model, test_set)``.

    Writes ``model.npz`` and ``model_training.png`` and a report section with bits per event and
    bits per note on the style's test split (before and after for fine-tuning).
    """
    from matplotlib.figure import Figure

    from labkit.checkpoint import save_model
    from labkit.data import load_melodies
    from labkit.errors import CheckpointError, CorpusError
    from labkit.checkpoint import load_melody_model, shipped_melody_model_info
    from labkit.models import ModelConfig
    from labkit.train import (AUGMENT_SEMITONES, TrainConfig, finetune, fit, split_scores, train_source,
                              valid_source)

    mels = load_melodies(styles=[style])
    if len(mels) == 0:
        raise CorpusError(f"the corpus has no tunes of style {style!r}")
    train_set, valid_set, test_set = (_first(mels.split(s), settings.max_tunes) for s in ("train", "valid", "test"))
    report.section(f"2. The model: a melody LSTM on {style} tunes")

    model, before, how, info = None, None, None, {}
    if not settings.train:
        try:
            model, model_config = load_melody_model()
        except CheckpointError as exc:
            report.add(f"The shipped model could not be loaded ({exc}); training one from scratch instead.", "")
    steps, rate = _schedule(settings, from_scratch=model is None)
    cfg = TrainConfig(seed=seed, num_steps=steps, batch_size=settings.batch_size, seq_len=settings.seq_len,
                      learning_rate=rate, warmup_steps=min(20, steps), eval_every=min(settings.eval_every, steps),
                      patience=0, progress=settings.progress, log_every=max(1, min(10, steps)))
    source = train_source(train_set, cfg)
    valid = valid_source(valid_set, cfg)
    started = time.perf_counter()
    if model is not None:
        how = "fine-tuned from the shipped model"
        try:
            info = shipped_melody_model_info()
        except CheckpointError:
            info = {}
        before = split_scores(model, test_set)
        shipped = info.get("scores", {}).get("test", {})
        report.add(f"Start: the shipped model ({model_config.num_layers} x {model_config.hidden_size} LSTM, "
                   f"{model_config.num_params():,} parameters), trained on all folk styles "
                   f"({info.get('train_seconds', 0) / 60:.0f} min, {info.get('steps_run', '?')} steps); on the whole "
                   f"folk test split it scores {shipped.get('bits_per_event', float('nan')):.3f} bits per event "
                   f"and {shipped.get('bits_per_note', float('nan')):.3f} bits per note.", "")
        started = time.perf_counter()
        model, history = finetune(model, model_config, cfg, source, valid)
        curve = [(r["step"], r["train_bits"], r["valid_bits"]) for r in history]
    else:
        how = "trained from scratch"
        model_config = ModelConfig(hidden_size=settings.hidden_size, num_layers=settings.num_layers, dropout=0.1)
        model, history = fit(model_config, cfg, source, valid)
        curve = [(r["step"], r["train_bits"], r["valid_bits"]) for r in history]
    seconds = time.perf_counter() - started
    after = split_scores(model, test_set)
    save_model(report.out / "model.npz", model, model_config,
               {"style": style, "how": how, "train_config": cfg.to_dict(), "test_scores": after})

    report.add(f"Model {how} on the `{style}` training split ({len(train_set):,} tunes, transposed by up to "
               f"±{AUGMENT_SEMITONES} semitones) for {cfg.num_steps} steps of {cfg.batch_size} x {cfg.seq_len} "
               f"events, AdamW at peak learning rate {cfg.learning_rate:g}, seed {seed}: {seconds:.0f} s. "
               f"Validation: {len(valid_set)} tunes. Saved as `model.npz`.", "")
    rows = [["bits per event", f"{after['bits_per_event']:.3f}"], ["bits per note", f"{after['bits_per_note']:.3f}"],
            ["next-event accuracy", f"{after['accuracy']:.1%}"]]
    header = ["test split", how]
    if before is not None:
        header = ["test split", "shipped model", "after fine-tuning"]
        rows = [[rows[0][0], f"{before['bits_per_event']:.3f}", rows[0][1]],
                [rows[1][0], f"{before['bits_per_note']:.3f}", rows[1][1]],
                [rows[2][0], f"{before['accuracy']:.1%}", rows[2][1]]]
    report.add(f"Scores on the `{style}` test split ({after['melodies']} whole tunes, {after['events']:,.0f} events, "
               f"{after['notes']:,} notes scored):", "")
    report.table(header, rows)
    report.add("", "Bits per event: the mean of -log2 p(event | the events before) over every step (holds, "
               "note-offs, note-ons). Bits per note: the same total per note, i.e. rhythm and pitch together; "
               "not IDyOM's pitch-only bits per note (see notebook 04_lstm_melody_model.ipynb).")

    figure = Figure(figsize=(7, 3.5))
    ax = figure.add_subplot()
    steps = [c[0] for c in curve]
    ax.plot([s for s, t, _ in curve if t is not None], [t for _, t, _ in curve if t is not None], "o-",
            label="train (windows, transposed)")
    ax.plot([s for s, _, v in curve if v is not None], [v for _, _, v in curve if v is not None], "s-",
            label="validation")
    ax.set(xlabel="step", ylabel="bits per event", title=f"{how} on {style}")
    if steps:
        ax.set_xlim(min(steps) - 1, max(steps) + 1)
    ax.legend()
    figure.tight_layout()
    figure.savefig(report.out / "model_training.png", dpi=110)
    report.add("", "![training curve](model_training.png)")
    return model, test_set


def generation_stage(report: Report, model, settings: DemoSettings, test_set, *, seed: int = 0) -> list[dict]:
    """Generate ``settings.num`` melodies primed with the first bar of a test tune; MIDI, WAV, PNG."""
    from labkit.errors import LabkitError
    from labkit.generate import generate_melodies, write_outputs
    from labkit.sample import default_primer, primer_from_melody

    primer, primer_note = None, "one middle C"
    if len(test_set):
        tune = test_set.melody(int(np.random.default_rng([seed, 3]).integers(len(test_set))))
        try:
            primer = primer_from_melody(tune, num_steps=settings.primer_steps)
            primer_note = f"the first {settings.primer_steps} steps of test tune `{tune.source}`"
        except LabkitError as exc:
            primer_note = f"one middle C (the test tune could not prime: {exc})"
    if primer is None:
        primer = default_primer()
    melodies = generate_melodies(model, num=settings.num, length=settings.length, temperature=settings.temperature,
                                 top_k=settings.top_k, top_p=settings.top_p, primer=primer, seed=seed)
    sampling = {"num": settings.num, "length": settings.length, "temperature": settings.temperature,
                "top_k": settings.top_k, "top_p": settings.top_p, "seed": seed, "primer": primer_note,
                "primer_tokens": int(len(primer))}
    records = write_outputs(melodies, report.out / "generated", audio=settings.audio, piano_roll=True,
                            settings=sampling)
    report.section("3. Generated melodies")
    report.add(f"{settings.num} melodies of {settings.length} new steps ({settings.length / 16:g} bars of 4/4) after "
               f"a primer of {len(primer)} tokens ({primer_note}), sampled with temperature {settings.temperature:g}, "
               f"top-k {settings.top_k or 'off'}, top-p {settings.top_p if settings.top_p < 1 else 'off'}, seed {seed}. "
               "Files in `generated/` (the settings also in `generated/generation.json`); the same seed writes the "
               "same files.", "")
    report.table(["melody", "notes", "pitches", "mean note (steps)", "silence", "files"],
                 [[r["name"], r["notes"], f"{r['lowest']}-{r['highest']}" if r["notes"] else "-",
                   r["mean_note_steps"] if r["notes"] else "-", f"{r['silence_share']:.0%}",
                   ", ".join(f"`generated/{Path(p).name}`" for p in (r["midi"], r["wav"], r["png"]) if p)]
                  for r in records])
    for r in records[:2]:
        report.add("", f"![{r['name']}](generated/{Path(r['png']).name})")
    return records


def to_order_stage(report: Report, settings: DemoSettings, *, seed: int = 0) -> list[dict]:
    """Whole tunes to order from the shipped conditioned model, judged per style (report section 5).

    Returns one record per style: ``{"style", "meter", "key", "tunes", "ended", "agreement", "median_overlap",
    "min_overlap", "min_feature"}`` (an empty list when the shipped conditioned model is missing).
    """
    from labkit.conditioned import (DEFAULT_GUIDANCE, DEFAULT_POSTERIOR, load_conditioned_model, parse_key,
                                    sample_to_order)
    from labkit.errors import LabkitError
    from labkit.generate import write_outputs
    from labkit.judge import compare_sets, corpus_paths, read_tunes, style_verdicts, tune_features
    from labkit.style.model import load_style_model

    report.section("5. Generation to order")
    try:
        model, _, encoding, meta = load_conditioned_model()
    except LabkitError as exc:
        report.add(f"Skipped: {exc}")
        return []
    style_model = load_style_model()
    records = []
    for index, style in enumerate(settings.order_styles):
        typical = meta.get("typical", {}).get(style)
        if typical is None or style not in encoding.styles:
            report.add(f"- {style}: the conditioned model does not know this style; skipped.")
            continue
        tunes = sample_to_order(model, encoding, style=style, meter=typical["meter"], key=parse_key(typical["key"]),
                                num=settings.order_num, max_steps=settings.order_max_steps,
                                temperature=settings.temperature, seed=seed + index)
        folder = report.out / "to_order" / style
        write_outputs([m for m, _ in tunes], folder, settings={"style": style, **typical, "seed": seed + index})
        generated, _, sequences = read_tunes([folder], with_sequences=True)
        real, _ = read_tunes(corpus_paths(style)[:settings.order_real])
        verdicts = style_verdicts(sequences, style_model, style if style in style_model.styles else None)
        overlaps = {}
        if generated and len(real) >= 2:
            compared = compare_sets([tune_features(m) for m in generated], [tune_features(m) for m in real])
            overlaps = {k: v["overlap"] for k, v in compared.items() if v["overlap"] is not None}
        worst = min(overlaps, key=overlaps.get) if overlaps else None
        records.append({"style": style, "meter": typical["meter"], "key": typical["key"], "tunes": len(tunes),
                        "ended": sum(info["ended"] for _, info in tunes),
                        "agreement": verdicts["shares"].get(style) if verdicts["scored"] else None,
                        "median_overlap": float(np.median(list(overlaps.values()))) if overlaps else None,
                        "min_overlap": overlaps.get(worst), "min_feature": worst})
    report.add(f"The shipped conditioned model (`labkit/assets/melody_conditioned.npz`) asked for {settings.order_num} "
               f"whole tunes per style, each in its style's typical metre and key, temperature {settings.temperature:g} "
               f"on the choice of pitch, guidance {DEFAULT_GUIDANCE:g} towards the style asked for and away from "
               f"the styles the tune so far is taken for (posterior weights, {DEFAULT_POSTERIOR:g}; `generate`'s "
               f"defaults), at most {settings.order_max_steps} steps; nothing selected afterwards. *Agrees*: the share of the "
               "tunes the shipped style model calls the style asked for; *overlap*: the judge's overlap area "
               f"(Yang and Lerch 2018) with the style's first {settings.order_real} real test tunes, median and "
               "smallest over the features. Files in `to_order/<style>/`. The full measurement (50 tunes per style): "
               "`benchmarks/conditioned_table.py`.", "")

    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    def num(x):
        return "-" if x is None else f"{x:.2f}"

    report.table(["style asked for", "metre, key", "tunes (ended)", "style model agrees", "median overlap",
                  "min overlap (feature)"],
                 [[r["style"], f"{r['meter']}, {r['key']}", f"{r['tunes']} ({r['ended']})", pct(r["agreement"]),
                   num(r["median_overlap"]), f"{num(r['min_overlap'])} ({r['min_feature'] or '-'})"]
                  for r in records])
    return records


def run(out: str | Path = "out", *, seed: int = 0, train: bool = False, style: str = DEFAULT_STYLE,
        quick: bool | None = None, **overrides) -> Path:
    """Run every stage of the demo and write ``out/report.md``; returns its path.

    Args:
        out: output folder.
        seed: the seed of every random choice (example tune, training, sampling).
        train: train a model from scratch instead of fine-tuning the shipped one.
        style: the corpus style the model stage trains on.
        quick: tiny settings (default: ``LABKIT_FAST``).
        overrides: fields of :class:`DemoSettings` (``steps``, ``num``, ``temperature``, ...).
    """
    out = check_output_folder(out, ["report.md"], what="demo folder")  # before any work: one line if unusable
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    settings = demo_settings(train=train, quick=quick, **overrides)
    from labkit.conditioned import CONDITIONED_STYLES
    from labkit.errors import ConfigError

    unknown = [s for s in settings.order_styles if s not in CONDITIONED_STYLES]
    if unknown:
        raise ConfigError(f"unknown style {unknown[0]!r}; choose among {', '.join(CONDITIONED_STYLES)}", "--to-order")
    started = time.perf_counter()
    times = {}
    corpus_stage(report, seed=seed)
    times["corpus"] = time.perf_counter() - started
    model, test_set = model_stage(report, settings, style=style, seed=seed)
    times["model"] = time.perf_counter() - started - sum(times.values())
    generation_stage(report, model, settings, test_set, seed=seed)
    times["generation"] = time.perf_counter() - started - sum(times.values())
    from labkit.style.demo import style_stage

    style_stage(report, out / "generated", target=style, seed=seed)
    times["style"] = time.perf_counter() - started - sum(times.values())
    to_order_stage(report, settings, seed=seed)
    times["to order"] = time.perf_counter() - started - sum(times.values())
    report.section("Run")
    report.add(f"Whole demo: {time.perf_counter() - started:.0f} s ("
               + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")"
               + (" with the quick settings (LABKIT_FAST)." if settings.quick else "."))
    return report.write()
