"""Regenerate tests/golden/<name>.json: the audit JSON of each sample capture, normalised.

    python sample_pcaps/make_golden.py [NAME ...]

Runs the real CLI in-process (the same way tests/test_samples_audit.py does) on
sample_pcaps/<name>.pcapng with <name>.roles.yaml, and writes the JSON with the run-specific fields
removed (run.started, run.finished, run.command_line) and file paths made relative to the repository
root. The golden files are only ever written by this script, never edited by hand: after an intended
change to the product or the catalog, run it and review `git diff tests/golden/` before committing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = ROOT / "sample_pcaps"
GOLDEN_DIR = ROOT / "tests" / "golden"
NAMES = ["cvad-onprem", "daas-cloud", "gateway-dmz", "netscaler-ha", "pvs-boot"]
RUN_SPECIFIC = ("started", "finished", "command_line")


def _relative(path: str) -> str:
    """A path as seen from the repository root (posix separators); other paths keep their file name."""
    p = Path(path)
    if not p.is_absolute():
        p = Path.cwd() / p
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return p.name


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """The audit JSON without what differs from run to run (a deep copy; the input is not changed)."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    for key in RUN_SPECIFIC:
        out.get("run", {}).pop(key, None)
    for item in out.get("inputs", []):
        if item.get("path") not in (None, "-"):
            item["path"] = _relative(item["path"])
    roles_file = out.get("roles_file") or {}
    if roles_file.get("path"):
        roles_file["path"] = _relative(roles_file["path"])
    return out


def sample_args(name: str, outdir: Path) -> list[str]:
    """The CLI arguments the test and this script use for one sample."""
    return [
        str(SAMPLES_DIR / f"{name}.pcapng"),
        "--roles",
        str(SAMPLES_DIR / f"{name}.roles.yaml"),
        "--json",
        str(outdir / "out.json"),
        "-o",
        str(outdir / "out.html"),
    ]


def audit(name: str) -> dict[str, Any]:
    """Run the CLI in-process on one sample and return its JSON document (not normalised)."""
    from click.testing import CliRunner

    from auditor.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(tmp)
        result = CliRunner().invoke(main, sample_args(name, outdir), catch_exceptions=False)
        if result.exit_code != 0:
            raise SystemExit(f"{name}: pcap-audit exited {result.exit_code}\n{result.output}")
        doc: dict[str, Any] = json.loads((outdir / "out.json").read_text(encoding="utf-8"))
    return doc


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    names = argv or NAMES
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown sample(s): {', '.join(unknown)}; known: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = GOLDEN_DIR / f"{name}.json"
        text = dump(normalise(audit(name)))
        old = target.read_text(encoding="utf-8") if target.exists() else None
        target.write_text(text, encoding="utf-8")
        state = "unchanged" if old == text else ("written" if old is None else "CHANGED")
        print(f"{os.path.relpath(target, ROOT)}: {state}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
