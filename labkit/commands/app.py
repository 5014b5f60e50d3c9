"""``python -m labkit app``: the studio app (sampler, mixer, live mode, style index) as a web page on localhost.

Serves the app's notebook (:data:`labkit.app.NOTEBOOK`, installed with the package) with Voila: a page
of widgets without code cells, driven by a Python kernel on this machine. The URL is printed as soon as
the server listens; the page itself appears after the kernel has loaded the models (a few seconds).
Ctrl-C stops the server. Files the app writes (MIDI files, the mix, the live recording) go to ``--out``.

Fails with one line and exit status 2 when Voila is not installed (``pip install 'labkit[app]'``) or
the port is taken; a failure inside the page is shown in the page, in red.

Examples::

    python -m labkit app                      # http://127.0.0.1:8866/
    python -m labkit app --port 8900 --out out/studio

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

from labkit.commands._args import integer

#: Port the app listens on unless ``--port`` says otherwise.
DEFAULT_PORT = 8866


def register(subparsers) -> None:
    """Add ``app`` to ``python -m labkit``."""
    parser = subparsers.add_parser(
        "app", help="serve the studio app (sampler, mixer, live mode, style index) on localhost",
        description="Serve the studio app (sampler, mixer, live mode, style index) as a web page on "
                    "localhost with Voila; prints the URL. Ctrl-C stops it.")
    parser.add_argument("--port", type=integer(1024, 65535), default=DEFAULT_PORT, metavar="N",
                        help=f"port to listen on, 1024..65535 (default: {DEFAULT_PORT})")
    parser.add_argument("--out", default="out/app", metavar="DIR",
                        help="folder for the files the app writes (default: out/app)")
    parser.add_argument("--open", action="store_true", help="also open the page in the default browser")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    """Handler: check Voila, the port and the folder, then serve until Ctrl-C or the server ends."""
    import importlib.util
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from labkit.app import NOTEBOOK, OUT_ENV
    from labkit.errors import ConfigError

    out = Path(args.out).expanduser().resolve()      # the flags first, then what the machine lacks
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file; --out names the folder for the app's files", args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder ({exc.strerror or exc})", args.out) from None
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            raise ConfigError(f"port {args.port} is in use; pick another with --port", "app") from None
    if importlib.util.find_spec("voila") is None:
        raise ConfigError("Voila is not installed: pip install 'labkit[app]' (or pip install voila)", "app")
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={args.port}", "--Voila.ip=127.0.0.1",
               "--VoilaConfiguration.show_tracebacks=True", "--Voila.port_retries=0"]
    if not args.open:
        command.append("--no-browser")
    env = dict(os.environ, **{OUT_ENV: str(out)})
    server = subprocess.Popen(command, env=env)
    print(f"labkit app: serving the studio on http://127.0.0.1:{args.port}/ (files in {out}; Ctrl-C stops it)",
          flush=True)
    try:
        return 0 if server.wait() in (0, -2, 130) else 2
    except KeyboardInterrupt:
        server.terminate()
        server.wait(10)
        return 0
