"""``python -m shapekit``: the same as the ``shapekit`` command."""

import os
import sys

# `python -m` puts the working directory first on sys.path; shapekit is imported by now, so drop
# it: a torch.py (or any module) lying in the directory the command runs in must never be run.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli import main

sys.exit(main())
