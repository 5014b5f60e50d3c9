"""``python -m labkit``: the command line (see :mod:`labkit.cli`)."""
from labkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
