"""The scaled mode's roles on Postgres (issue 16)."""
