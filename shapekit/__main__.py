"""``python -m shapekit``: the same as the ``shapekit`` command."""

import sys

from ._cli import main

sys.exit(main())
