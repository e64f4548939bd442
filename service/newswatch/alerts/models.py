"""The alerts stage's tables are defined in the store (store/alert_models.py); these names
stay importable from here for callers not moved yet (api/, cli/silence.py, retention.py)."""

from newswatch.store.alert_models import AlertState, Notification, RuleMatch, Silence

__all__ = ["AlertState", "Notification", "RuleMatch", "Silence"]
