"""``python -m labkit harmonize MELODY.mid --out DIR``: a melody set in four parts (soprano, alto, tenor, bass).

The melody is the soprano; alto, tenor and bass come from the chorale model that ships with labkit
(``labkit/assets/chorale_model``, :mod:`labkit.polyphony.harmony_model`) or from ``--checkpoint DIR``.
Writes ``DIR/harmonized.mid`` (four tracks named Soprano, Alto, Tenor, Bass), ``DIR/harmonized.wav``
(SoundFont rendering) and ``DIR/harmonized.png`` (the four voices in four colours), and prints the setting's
rule rates (:func:`labkit.polyphony.harmony.harmony_rates`). While drawing, the textbook rules leave out
parallel fifths and octaves, voice crossing and pitches outside the voices' ranges (``--no-rules``: the
model alone). The same seed writes the same bytes.
A melody with no notes, with a chord (two notes at once), or an unreadable file: one line naming the file,
exit status 2.

Example::

    python -m labkit harmonize data/midi/essen/essen-altdeu10-0001.mid --out out/harmonized --seed 1

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

from labkit.commands._args import number, seed

#: The files ``harmonize`` writes into ``--out``.
HARMONIZE_FILES = ("harmonized.mid", "harmonized.wav", "harmonized.png")


def register(subparsers) -> None:
    """Add ``harmonize`` to ``python -m labkit``."""
    from labkit.polyphony.harmony import DEFAULT_HARMONY_TEMPERATURE   # light: numpy only, no JAX

    parser = subparsers.add_parser(
        "harmonize", help="set a melody in four parts (MIDI with four tracks, WAV, picture)",
        description="Harmonize a monophonic melody in four parts: the melody as soprano, alto, tenor and bass "
                    "drawn by a chorale model (default: the one shipped with labkit). Same seed, same files.")
    parser.add_argument("melody", metavar="MELODY.mid", help="a MIDI file holding one melody (one note at a time)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="a chorale model folder (make chorale-model); default: the shipped model")
    parser.add_argument("--seed", type=seed, default=0, metavar="S",
                        help="seed of the sampling, 0..4294967295 (default: 0)")
    parser.add_argument("--temperature", type=number(0.05, 10.0), default=DEFAULT_HARMONY_TEMPERATURE, metavar="T",
                        help=f"sampling temperature, 0.05..10 (default: {DEFAULT_HARMONY_TEMPERATURE})")
    parser.add_argument("--no-rules", action="store_true",
                        help="draw from the model alone (default: leave out parallel fifths and octaves, voice "
                             "crossing and pitches outside the voices' ranges while drawing)")
    parser.set_defaults(func=_run)


def _write_picture(sequence, path, title: str):
    from matplotlib.figure import Figure

    from labkit import viz
    from labkit._common import atomic_write
    from labkit.polyphony.harmony import HARMONY_VOICES

    figure = Figure(figsize=(12, 5))
    ax = viz.plot_piano_roll(sequence, ax=figure.add_subplot(), title=title, time_unit="beats")   # bar lines too
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) == len(HARMONY_VOICES):
        ax.legend(handles, HARMONY_VOICES, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)
    figure.tight_layout()
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100,
                                                            metadata={"Software": None}))


def _run(args) -> int:
    """Handler: check the output folder, read the melody, harmonize, write MIDI, WAV and PNG."""
    from pathlib import Path

    from labkit import audio
    from labkit._common import KEY_TONIC_NAMES, check_output_folder, display_name
    from labkit.midi_io import read_midi, write_midi
    from labkit.polyphony.harmony import harmony_counts, harmony_rates
    from labkit.polyphony.harmony_model import harmonize_sequence, load_harmony_model, melody_setting

    out = check_output_folder(args.out, HARMONIZE_FILES, reads=[args.melody])
    sequence = read_midi(args.melody)
    melody_setting(sequence, args.melody)                    # no notes, a chord: refused before the model loads
    model, _ = load_harmony_model(args.checkpoint)
    harmonized, info = harmonize_sequence(sequence, model, seed=args.seed, temperature=args.temperature,
                                          rules=not args.no_rules, path=args.melody)
    out.mkdir(parents=True, exist_ok=True)
    midi = write_midi(harmonized, out / "harmonized.mid")
    wav = audio.write_wav(out / "harmonized.wav", audio.render(harmonized))
    png = _write_picture(harmonized, out / "harmonized.png", f"{Path(display_name(args.melody)).name}, harmonized "
                                                               f"(seed {args.seed})")
    rates = harmony_rates(harmony_counts(info["voices"], info["key"]))
    tonic, mode = info["key"]
    print(f"{display_name(midi)}: 4 voices, {info['frames']} eighth notes, key {KEY_TONIC_NAMES[tonic]} {mode} "
          f"(estimated), soprano moved {info['shift']:+d} semitones for the model "
          f"(+ {display_name(wav)}, {display_name(png)})")
    print("rates: " + ", ".join(f"{k.replace('_', ' ')} {100 * v:.2f}%" for k, v in rates.items()))
    return 0
