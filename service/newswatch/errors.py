"""One exception hierarchy: every error newswatch raises for a user to read.

Each carries `where` it happened (a file and line, a URL, a source, a table) apart from its
`message`, so a command can print one line, "where: message", and a caller can tell a bad
config file from a store that cannot be reached without parsing text. The CLI turns any of
them into that line and exit status 1 (cli/common.py, `reported_errors`). Standard library
errors raised as well (ValueError for bad input in code paths that tests and callers already
catch as such) are kept through multiple inheritance where a subclass replaces one.
"""

from __future__ import annotations


class NewswatchError(Exception):
    """An error a user can act on: `message` says what is wrong, `where` where (or None)."""

    def __init__(self, message: str, *, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def one_line(self) -> str:
        """The error as one line (a multi-line message is cut after its first line)."""
        first = (str(self).strip().splitlines() or [type(self).__name__])[0]
        return first


class ConfigError(NewswatchError):
    """The configuration (the config file, a setting) is unusable."""


class StoreError(NewswatchError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be opened or reached."""


class FetchError(NewswatchError):
    """A fetch failed in a way its caller must hear about (a poll records most failures as
    outcomes instead, without raising)."""


class InputError(NewswatchError, ValueError):
    """A file or value the user gave cannot be read (a line of a replay file, an argument)."""


class NotFound(NewswatchError, LookupError):
    """Something named by the user (a source, a rule, an event) does not exist."""


class RegistryError(NewswatchError):
    """A plug-in registry was used wrongly: a name registered twice, or an unknown one."""
