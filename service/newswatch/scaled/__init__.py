"""The scaled mode's roles on Postgres: scheduler, fetch workers, delivery workers.

`newswatch run --role scheduler|fetch|deliver` (docs/decisions/0084, 0161): the parts of the
single-process service, each in processes of its own, coordinated through the store and
procrastinate's job queue in it.
"""
