"""Every test runs with one torch thread, and so does every subprocess a test starts: the models
here are tiny, and two threads on a busy 2-core machine spin in OpenMP barriers (one lesson took
283 s unpinned against 47 s pinned)."""

from __future__ import annotations

import os

# Before torch is imported anywhere: read by torch (OpenMP, MKL) at start-up, and inherited by
# every subprocess the tests start. A value the user set is kept.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
