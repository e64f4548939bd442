"""The grouping stage is grouping/stage.py; these names stay importable from here for the
callers not moved yet (pipeline.py)."""

from newswatch.grouping.stage import EventGrouper, Placement

__all__ = ["EventGrouper", "Placement"]
