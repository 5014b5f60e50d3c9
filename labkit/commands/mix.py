"""``python -m labkit mix``: several MIDI files mixed into one stereo WAV (volume, pan, instrument, room, master).

Each ``TRACK.mid`` is one voice of the mix (:mod:`labkit.mix`). ``--volume``, ``--pan`` and
``--program`` take one value per track, or one value for all of them. Volumes and the master are
in dB (-60..+12; 0 = as rendered, +6 = twice the amplitude); a pan is -1 (left) .. 1 (right),
constant power; ``--reverb`` is the room, 0 (dry) .. 1. Levels are not normalised: only a mix that
would clip is scaled down as a whole (the line printed says so). The command prints one line with
the length and each channel's RMS level.

Every bad MIDI file is reported, one line each (``labkit: <file>: <problem>``), then the exit status
is 2; so is a value out of range or a count of values that fits neither one nor every track (one
line naming the flag).

Examples::

    python -m labkit mix melody.mid bass.mid --volume 0 -6 --pan -0.5 0.5 --program 73 32 --out mix.wav
    python -m labkit mix a.mid b.mid c.mid --reverb 0.3 --master -3 --out out/mix.wav

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import sys

from labkit.commands._args import integer, number
from labkit.mix import PAN_RANGE, REVERB_RANGE, VOLUME_DB_RANGE

#: Sample rates ``--sample-rate`` accepts (Hz).
SAMPLE_RATE_RANGE = (8000, 192000)


def register(subparsers) -> None:
    """Add ``mix`` to ``python -m labkit``."""
    parser = subparsers.add_parser(
        "mix", help="mix MIDI files into one stereo WAV (volume, pan, instrument, reverb, master)",
        description="Mix MIDI files (one voice each) into one stereo WAV with per-track volume (dB), "
                    "constant-power pan and General MIDI instrument, a room (reverb) and a master level.")
    parser.add_argument("tracks", nargs="+", metavar="TRACK.mid", help="MIDI files, one voice each")
    parser.add_argument("--volume", nargs="+", type=number(*VOLUME_DB_RANGE), default=[0.0], metavar="DB",
                        help="level of each track in dB, -60..12 (one per track or one for all; default: 0)")
    parser.add_argument("--pan", nargs="+", type=number(*PAN_RANGE), default=[0.0], metavar="P",
                        help="pan of each track, -1 left .. 1 right (one per track or one for all; default: 0)")
    parser.add_argument("--program", nargs="+", type=integer(0, 127), default=None, metavar="N",
                        help="General MIDI program of each track, 0..127 (one per track or one for all; "
                             "default: the files' own)")
    parser.add_argument("--reverb", type=number(*REVERB_RANGE), default=0.0, metavar="R",
                        help="room (reverb) amount, 0 dry .. 1 large hall (default: 0)")
    parser.add_argument("--master", type=number(*VOLUME_DB_RANGE), default=0.0, metavar="DB",
                        help="master level in dB, -60..12 (default: 0)")
    parser.add_argument("--sample-rate", type=integer(*SAMPLE_RATE_RANGE), default=None, metavar="HZ",
                        help="sample rate of the WAV, 8000..192000 Hz (default: 22050)")
    parser.add_argument("--out", required=True, metavar="FILE.wav", help="the stereo WAV to write")
    parser.set_defaults(func=_run, parser=parser)


def _per_track(parser, flag: str, values, count: int) -> list:
    if values is None:
        return [None] * count
    if len(values) == 1:
        return list(values) * count
    if len(values) != count:
        parser.error(f"argument {flag}: {len(values)} values for {count} tracks; give one per track or one for all")
    return list(values)


def _run(args) -> int:
    """Handler: check the counts and the output, read every file (report all bad ones), mix, write."""
    from pathlib import Path

    from labkit._common import display_name
    from labkit.audio import DEFAULT_SAMPLE_RATE
    from labkit.errors import ConfigError
    from labkit.mix import Track, mix_tracks, read_tracks, write_mix

    count = len(args.tracks)
    volumes = _per_track(args.parser, "--volume", args.volume, count)
    pans = _per_track(args.parser, "--pan", args.pan, count)
    programs = _per_track(args.parser, "--program", args.program, count)
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError("is a folder; give the WAV file to write", args.out)
    if not out.parent.is_dir():
        raise ConfigError("the folder of --out does not exist", args.out)
    music, errors = read_tracks(args.tracks)
    if errors:
        for exc in errors:
            print(f"labkit: {exc}", file=sys.stderr)
        return 2
    tracks = [Track(m, volume_db=v, pan=p, program=prog, name=display_name(path))
              for m, v, p, prog, path in zip(music, volumes, pans, programs, args.tracks)]
    result = mix_tracks(tracks, reverb=args.reverb, master_db=args.master,
                        sample_rate=args.sample_rate or DEFAULT_SAMPLE_RATE)
    write_mix(out, result)
    left, right = result.rms_db
    scaled = f", scaled {result.scaled_db:.1f} dB to avoid clipping" if result.scaled_db else ""
    print(f"{display_name(out)}: {count} track{'s' if count > 1 else ''}, {result.seconds:.2f} s, stereo "
          f"{result.sample_rate} Hz, RMS L {left:.2f} dB R {right:.2f} dB, peak {result.peak_db:.2f} dBFS{scaled}")
    return 0
