"""``python -m cnnlite ...``: the same as the ``cnnlite`` command."""
from cnnlite.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
