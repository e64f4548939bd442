"""The compiled inner loops of grouping (`_speedups.c`), or None where they are not built.

Each compiled function has a pure-Python twin beside its caller; the twins are the reference
(tests compare the two on the same inputs) and the fallback. NEWSWATCH_PURE_PYTHON=1 forces
the twins, to compare or to rule the extension out when chasing a problem.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("NEWSWATCH_PURE_PYTHON", "").lower() in ("1", "true", "yes"):
        return None
    try:
        from newswatch.grouping import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load()
