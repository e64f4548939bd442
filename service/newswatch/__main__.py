"""`python -m newswatch` is the `newswatch` command."""

from newswatch.cli import main

main(prog_name="newswatch")
