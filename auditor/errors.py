"""Narrow error types. Each carries a location so that the CLI can print one clear line."""

from __future__ import annotations


class AuditorError(Exception):
    """Base class: bad input or usage. The CLI prints ``str(err)`` and exits with status 2."""


class CatalogError(AuditorError):
    """One or more problems in catalog (rules) files.

    ``problems`` holds every problem found, each already formatted as
    ``file:line field: message`` so that one run lists them all.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid catalog"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


class RolesError(AuditorError):
    """A problem in a roles.yaml file, with file and line."""


class CaptureError(AuditorError):
    """A capture that cannot be read at all (not one of its packets: those are counted)."""
