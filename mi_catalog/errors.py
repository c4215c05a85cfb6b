"""Errors.

The library raises :class:`MiCatalogError` subclasses and never prints or exits;
only the CLI (:mod:`mi_catalog.cli`) turns them into a one-line message and an
exit code: :class:`UsageError` (bad input: a flag, a value, a folder) exits 2,
any other :class:`MiCatalogError` (the catalog or a build has problems) exits 1.
"""

from __future__ import annotations


class MiCatalogError(Exception):
    """Base class of every error the library raises on purpose; its message is one actionable line."""


class UsageError(MiCatalogError, ValueError):
    """The caller asked for something that cannot be done as asked (exit 2)."""


class QueryError(UsageError):
    """A malformed free-text query or an unknown facet value, sort, year or limit (exit 2)."""


class CatalogNotFoundError(UsageError):
    """The catalog folder does not exist or holds no entry files (exit 2)."""


class CatalogProblemsError(MiCatalogError):
    """The catalog has validation problems and the operation needs a valid one (exit 1)."""


class BuildError(MiCatalogError):
    """A build step (mkdocs) failed (exit 1)."""


class CliError(Exception):
    """Raised by command handlers only: printed as one line on stderr, exits with ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def exit_code(err: BaseException) -> int:
    """The CLI's exit code for an error: 2 for bad input, 1 for everything else."""
    if isinstance(err, CliError):
        return err.code
    return 2 if isinstance(err, UsageError) else 1
