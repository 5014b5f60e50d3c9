"""``make demo``: the course's main job, end to end, written to ``out/``.

Each stage adds a section to ``out/report.md`` and writes its files beside it:

1. corpus: tunes per collection and style, pitch and length distributions (PNG),
   one example melody as MIDI, WAV and a piano-roll PNG.

Notebook: 00_welcome_and_setup.ipynb
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
        path = self.out / "report.md"
        path.write_text("\n".join(["# labkit demo report", *self.lines]) + "\n", encoding="utf-8")
        return path


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


def run(out: str | Path = "out", *, seed: int = 0) -> Path:
    """Run every stage of the demo and write ``out/report.md``; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    started = time.perf_counter()
    corpus_stage(report, seed=seed)
    report.section("Run")
    report.add(f"Whole demo: {time.perf_counter() - started:.0f} s.")
    return report.write()
