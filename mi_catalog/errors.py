"""Errors the CLI turns into a one-line message and an exit code."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing error: printed as one line on stderr, exits with ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class QueryError(CliError):
    """A malformed free-text query or an unknown facet value (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)
