"""Find the bundled catalog and report templates, in a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _data_dir(name: str, repo_relative: Path) -> Path:
    # Where the wheel puts it, beside the modules: the folder importlib.resources finds for a package
    # installed as files, without importing it (it and its imports: ~0.01 s on a run).
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    if repo_relative.is_dir():
        return repo_relative
    raise FileNotFoundError(f"bundled {name} not found (looked in {packaged} and {repo_relative})")


def rules_dir() -> Path:
    """The bundled catalog folder (``rules/``)."""
    return _data_dir("rules", _REPO / "rules")


def templates_dir() -> Path:
    """The bundled report templates folder (``reports/templates/``)."""
    return _data_dir("templates", _REPO / "reports" / "templates")
