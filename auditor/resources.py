"""Find the bundled catalog and report templates, in a source checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _data_dir(name: str, repo_relative: Path) -> Path:
    packaged = resources.files("auditor") / "_data" / name
    if packaged.is_dir():
        return Path(str(packaged))
    if repo_relative.is_dir():
        return repo_relative
    raise FileNotFoundError(f"bundled {name} not found (looked in {packaged} and {repo_relative})")


def rules_dir() -> Path:
    """The bundled catalog folder (``rules/``)."""
    return _data_dir("rules", _REPO / "rules")


def templates_dir() -> Path:
    """The bundled report templates folder (``reports/templates/``)."""
    return _data_dir("templates", _REPO / "reports" / "templates")
