"""The alerts stage is alerts/stage.py; these names stay importable from here for the callers
not moved yet (pipeline.py, cli/rules.py, bench/bench_merge_fold.py)."""

from newswatch.alerts.judging import Firing, corroboration
from newswatch.alerts.stage import AlertStage

AlertEngine = AlertStage

__all__ = ["AlertEngine", "AlertStage", "Firing", "corroboration"]
