"""``python -m labkit generate``: melodies from a trained model, as MIDI (and WAV, PNG) files.

Without ``--checkpoint`` the model that ships with labkit is used
(``labkit/assets/melody_lstm.npz``). One file per melody: ``melody_001.mid``, ...;
``--audio`` adds ``melody_001.wav``, ``--piano-roll`` adds ``melody_001.png``;
``generation.json`` records the settings. The same seed writes byte-identical files.
A bad parameter or file gives one line naming the problem and exit status 2; ``--out`` is
checked before the model is loaded. A re-run into the same ``--out`` replaces the whole set
(every ``melody_NNN.*`` and ``generation.json``; other files stay), never a mix of two runs.

Examples::

    python -m labkit generate --num 4 --length 128 --temperature 0.9 --seed 1 --out out/gen --audio
    python -m labkit generate --primer tune.mid --primer-steps 32 --top-p 0.9 --out out/primed
    python -m labkit generate --checkpoint runs/x/best.npz --beam 4 --num 2 --out out/beam

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

from labkit.commands._args import MAX_GENERATED_STEPS, MAX_MELODIES, integer, number, seed, temperature
from labkit.generate import DEFAULT_LENGTH, DEFAULT_TEMPERATURE
from labkit.melody import DEFAULT_QPM

#: Bounds of ``--qpm``: MIDI stores a tempo in 24 bits of microseconds per quarter, so at least 4 qpm.
QPM_RANGE = (4.0, 1000.0)


def register(subparsers) -> None:
    """Add ``generate`` to ``python -m labkit``."""
    parser = subparsers.add_parser(
        "generate", help="generate melodies with a trained LSTM (MIDI, WAV, piano rolls)",
        description="Generate melodies with a trained melody LSTM (default: the model shipped with labkit) "
                    "and write one MIDI file per melody. Same seed, same files.")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="model checkpoint (.npz from save_model or training); default: the shipped model")
    parser.add_argument("--num", type=integer(1, MAX_MELODIES), default=4, metavar="N",
                        help=f"melodies to generate, 1..{MAX_MELODIES} (default: 4)")
    parser.add_argument("--length", type=integer(1, MAX_GENERATED_STEPS), default=DEFAULT_LENGTH, metavar="STEPS",
                        help=f"steps generated after the primer, 4 per quarter note, 1..{MAX_GENERATED_STEPS} "
                             f"(default: {DEFAULT_LENGTH})")
    parser.add_argument("--temperature", type=temperature, default=DEFAULT_TEMPERATURE,
                        metavar="T", help=f"sampling temperature, 0.001..1000 (default: {DEFAULT_TEMPERATURE})")
    parser.add_argument("--top-k", type=integer(0, 1000), default=0, metavar="K",
                        help="sample only from the K most likely tokens, at most the model's vocabulary "
                             "(default: 0 = off)")
    parser.add_argument("--top-p", type=number(0, 1, low_open=True, what="top_p", rule="lie in (0, 1] (1 = off)"),
                        default=1.0, metavar="P", help="nucleus sampling threshold in (0, 1] (default: 1 = off)")
    parser.add_argument("--primer", default=None, metavar="FILE.mid",
                        help="start from the melody of this MIDI file (default: one middle C)")
    parser.add_argument("--primer-steps", type=integer(1, 1_000_000), default=None, metavar="STEPS",
                        help="use only the first STEPS steps of the primer melody (default: all)")
    parser.add_argument("--beam", type=integer(0, 1000), default=0, metavar="B",
                        help="beam search with B beams instead of sampling, at most the model's vocabulary; "
                             "writes the best --num (default: 0)")
    parser.add_argument("--seed", type=seed, default=0, metavar="S",
                        help="seed of the sampling, 0..4294967295 (default: 0); recorded in generation.json")
    parser.add_argument("--qpm", type=number(*QPM_RANGE, high_open=True), default=DEFAULT_QPM,
                        help=f"tempo of the files, quarter notes per minute, in [4, 1000) (default: {DEFAULT_QPM:g})")
    parser.add_argument("--out", default="out/generated", metavar="DIR",
                        help="output folder (default: out/generated)")
    parser.add_argument("--audio", action="store_true", help="also write a WAV per melody (SoundFont rendering)")
    parser.add_argument("--piano-roll", action="store_true", help="also write a piano-roll PNG per melody")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    """Handler: load the model, check the settings, generate, write, print one line per file."""
    from labkit.errors import ConfigError
    from labkit.checkpoint import load_melody_model
    from labkit.encoding import MelodyEncoding
    from labkit._common import display_name
    from labkit.generate import check_outputs, check_settings, generate_melodies, read_primer, write_outputs

    if not (args.qpm > 0 and args.qpm < 1000):
        raise ConfigError(f"--qpm must lie in (0, 1000), got {args.qpm}")
    # Check the cheap things first, so a typo fails before a model is loaded or a file is read.
    check_settings(num=args.num, length=args.length, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, beam=args.beam, seed=args.seed)
    check_outputs(args.out, num=args.num, audio=args.audio, piano_roll=args.piano_roll)  # before any work
    primer = None
    if args.primer is not None:
        primer, _ = read_primer(args.primer, num_steps=args.primer_steps)
    elif args.primer_steps is not None:
        raise ConfigError("--primer-steps needs --primer")
    model, config = load_melody_model(args.checkpoint, encoding=MelodyEncoding())
    melodies = generate_melodies(model, num=args.num, length=args.length, temperature=args.temperature,
                                 top_k=args.top_k, top_p=args.top_p, primer=primer, beam=args.beam,
                                 seed=args.seed, qpm=args.qpm)
    settings = {"checkpoint": args.checkpoint or "shipped (labkit/assets/melody_lstm.npz)",
                "num": args.num, "length": args.length, "temperature": args.temperature, "top_k": args.top_k,
                "top_p": args.top_p, "beam": args.beam, "seed": args.seed, "qpm": args.qpm,
                "primer": None if args.primer is None else display_name(args.primer),
                "primer_steps": args.primer_steps,
                "primer_tokens": None if primer is None else len(primer)}
    records = write_outputs(melodies, args.out, audio=args.audio, piano_roll=args.piano_roll, settings=settings)
    for r in records:
        extra = ", ".join(display_name(p) for p in (r["wav"], r["png"]) if p)
        span = f"pitches {r['lowest']}-{r['highest']}" if r["notes"] else "no notes"
        print(f"{display_name(r['midi'])}: {r['notes']} notes, {span}" + (f" (+ {extra})" if extra else ""))
    return 0
