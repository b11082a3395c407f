"""``python -m fastconv``: train the reference networks (``train``) or show the build (``info``)."""
import sys

from .train import main

if __name__ == "__main__":
    sys.exit(main())
