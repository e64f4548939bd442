"""The scaled mode's roles on Postgres: scheduler, fetch workers, the grouper, delivery workers.

`newswatch run --role scheduler|fetch|group|deliver` (docs/decisions/0084, 0161, 0166): the
parts of the single-process service, each in processes of its own, coordinated through the
store, procrastinate's job queue in it, and the grouper's advisory lock and lease.
"""
