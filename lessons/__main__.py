"""``python -m lessons``: run every lesson in a subprocess, in order; non-zero if any fails.

    python -m lessons            all of them
    python -m lessons 03 05      only those whose names contain 03 or 05
    python -m lessons --list     list them
"""

import sys
from pathlib import Path

from shapekit.cli import main

sys.exit(main(["lessons", "--dir", str(Path(__file__).resolve().parent), *sys.argv[1:]]))
