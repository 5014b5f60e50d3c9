"""``python -m labkit generate``: melodies from a trained model, as MIDI (and WAV, PNG) files.

Without ``--checkpoint`` the model that ships with labkit is used
(``labkit/assets/melody_lstm.npz``).

**To order** (Sturm et al. 2016's folk-rnn): with ``--style``, ``--meter`` or ``--key`` the shipped
*conditioned* model (``labkit/assets/melody_conditioned.npz``, :mod:`labkit.conditioned`) writes whole
tunes of that style, metre and key, with bar lines and an end of their own; each MIDI file carries the
time signature, key signature and tempo. A flag left out takes the style's typical value (the most
common metre and key of its training tunes; the style defaults to irish). ``--length`` is then the cap
of a tune in steps (default 1024), ``--temperature`` shapes the choice of pitch only (when notes begin and
end is left to the model), and ``--guidance W`` pushes every token towards the style asked for and away
from the styles the tune so far could be taken for (default ``labkit.conditioned.DEFAULT_GUIDANCE``; 0: the
model as it is; see :func:`labkit.conditioned.sample_to_order`). Without these flags (or with ``--unconditioned``) the unconditioned
model of notebook 04 writes ``--length`` steps after a primer, as before. One file per melody: ``melody_001.mid``, ...;
``--audio`` adds ``melody_001.wav``, ``--piano-roll`` adds ``melody_001.png``;
``generation.json`` records the settings. The same seed writes byte-identical files.
A bad parameter or file gives one line naming the problem and exit status 2; ``--out`` is
checked before the model is loaded. A re-run into the same ``--out`` replaces the whole set
(every ``melody_NNN.*`` and ``generation.json``; other files stay), never a mix of two runs.

Examples::

    python -m labkit generate --num 4 --length 128 --temperature 0.9 --seed 1 --out out/gen --audio
    python -m labkit generate --primer tune.mid --primer-steps 32 --top-p 0.9 --out out/primed
    python -m labkit generate --checkpoint runs/x/best.npz --beam 4 --num 2 --out out/beam
    python -m labkit generate --style irish --meter 6/8 --key D --num 4 --out out/jigs

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

from labkit.commands._args import MAX_GENERATED_STEPS, MAX_MELODIES, integer, number, seed, temperature
from labkit.generate import DEFAULT_LENGTH, DEFAULT_TEMPERATURE
from labkit.melody import DEFAULT_QPM

#: ``--length`` to order: :data:`labkit.conditioned.DEFAULT_MAX_STEPS` (written here so that parsing the
#: command line does not import JAX; a test checks that the two agree).
TUNE_CAP_STEPS = 1024

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
    parser.add_argument("--length", type=integer(1, MAX_GENERATED_STEPS), default=None, metavar="STEPS",
                        help=f"steps generated after the primer, 4 per quarter note, 1..{MAX_GENERATED_STEPS} "
                             f"(default: {DEFAULT_LENGTH}); to order: the cap of a whole tune (default: "
                             f"{TUNE_CAP_STEPS})")
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
    parser.add_argument("--style", default=None, metavar="STYLE",
                        help="to order: the style of the tunes (irish, german, chinese, fiddle, chorale, ...)")
    parser.add_argument("--meter", default=None, metavar="N/D",
                        help="to order: the metre, e.g. 6/8 (default: the style's typical one)")
    parser.add_argument("--key", default=None, metavar="KEY",
                        help="to order: the key, e.g. D, F#m, Bb major (default: the style's typical one)")
    parser.add_argument("--guidance", type=number(0, 20, what="guidance", rule="be a number from 0 to 20"),
                        default=None, metavar="W",
                        help="to order: how hard each token is pushed towards the style asked for and away "
                             "from the styles the tune so far could be taken for, 0..20 (0 = the model as it "
                             "is; default: "
                             "labkit.conditioned.DEFAULT_GUIDANCE)")
    parser.add_argument("--unconditioned", action="store_true",
                        help="use the unconditioned model (notebook 04's; also the default without "
                             "--style/--meter/--key)")
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
    if args.style is not None or args.meter is not None or args.key is not None or args.guidance is not None:
        return _run_to_order(args)
    if args.length is None:
        args.length = DEFAULT_LENGTH
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


def _run_to_order(args) -> int:
    """Handler of ``--style/--meter/--key``: whole tunes from the conditioned model (see the module docstring)."""
    from labkit._common import display_name
    from labkit.conditioned import (DEFAULT_GUIDANCE, guidance_defaults, load_conditioned_model, parse_key,
                                    parse_meter, sample_to_order, key_name)
    from labkit.errors import ConfigError
    from labkit.generate import check_outputs, check_settings, write_outputs

    if args.unconditioned:
        raise ConfigError("cannot be combined with --style, --meter, --key or --guidance", "--unconditioned")
    for flag, value in (("--primer", args.primer), ("--primer-steps", args.primer_steps)):
        if value is not None:
            raise ConfigError("is not available when generating to order (--style/--meter/--key): "
                              "a tune starts from its conditions", flag)
    if args.beam:
        raise ConfigError("beam search is not available when generating to order (--style/--meter/--key)", "--beam")
    # syntax first, before any file is read
    if args.meter is not None:
        try:
            parse_meter(args.meter)
        except ConfigError as exc:
            raise ConfigError(exc.problem, "--meter") from None
    key = None
    if args.key is not None:
        try:
            key = parse_key(args.key)
        except ConfigError as exc:
            raise ConfigError(exc.problem, "--key") from None
    length = TUNE_CAP_STEPS if args.length is None else args.length
    check_settings(num=args.num, length=length, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed)
    check_outputs(args.out, num=args.num, audio=args.audio, piano_roll=args.piano_roll)
    model, config, encoding, meta = load_conditioned_model(args.checkpoint)
    style = args.style if args.style is not None else "irish"
    if style not in encoding.styles:
        raise ConfigError(f"unknown style {style!r}; choose one of {', '.join(encoding.styles)}", "--style")
    typical = meta.get("typical", {}).get(style, {})
    meter = args.meter if args.meter is not None else typical.get("meter", "4/4")
    if meter not in encoding.meters:
        raise ConfigError(f"the model knows no metre {meter!r}; choose one of {', '.join(encoding.meters)}", "--meter")
    key = key if key is not None else parse_key(typical.get("key", "C major"))
    if args.top_k > config.vocab_size:
        raise ConfigError(f"top_k={args.top_k} exceeds the model's vocabulary of {config.vocab_size} tokens", "--top-k")
    guidance = DEFAULT_GUIDANCE if args.guidance is None else args.guidance
    tunes = sample_to_order(model, encoding, style=style, meter=meter, key=key, num=args.num, max_steps=length,
                            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                            qpm=args.qpm, guidance=guidance)
    settings = {"checkpoint": args.checkpoint or "shipped (labkit/assets/melody_conditioned.npz)",
                "style": style, "meter": meter, "key": key_name(*key), "num": args.num, "max_steps": length,
                "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
                "guidance": guidance, **guidance_defaults(), "qpm": args.qpm,
                "ended": [info["ended"] for _, info in tunes]}
    records = write_outputs([m for m, _ in tunes], args.out, audio=args.audio, piano_roll=args.piano_roll,
                            settings=settings)
    for r, (melody, info) in zip(records, tunes):
        extra = ", ".join(display_name(p) for p in (r["wav"], r["png"]) if p)
        bars = melody.num_steps / encoding.bar_steps(meter)
        end = "ended" if info["ended"] else f"stopped at the cap of {length} steps"
        print(f"{display_name(r['midi'])}: {style}, {meter}, {key_name(*key)}: {r['notes']} notes, {bars:.1f} bars, "
              f"{end}" + (f" (+ {extra})" if extra else ""))
    return 0
