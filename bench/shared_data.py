"""Where the benchmarks read the shared corpora: $NEWSWATCH_SHARED_DATA, else ../shared/data
beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("NEWSWATCH_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared/data"
)


def shared_corpus(relative: str) -> Path:
    """The corpus file at `relative` under SHARED_DATA; exits with a message if it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        raise SystemExit(
            f"shared corpus missing: {path} (put the corpora at ../shared/data beside the "
            "checkout or set NEWSWATCH_SHARED_DATA)"
        )
    return path
