"""`pcap-audit roles ...`: roles.yaml from a capture (`roles suggest`, SPEC §7)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from auditor import cli_signals
from auditor.cli_audit import EXIT_OK, ProgressBar, one_line_errors
from auditor.cli_outputs import STDOUT, Protected, check_outputs, write_atomic

_LEVELS = ("low", "medium", "high")


@click.group("roles")
def roles() -> None:
    """roles.yaml from a capture.

    \b
    pcap-audit roles suggest capture.pcapng -o roles.yaml

    (A capture file named like a command is audited as ./roles or with -- roles.)"""


@roles.command("suggest")
@click.argument("captures", nargs=-1, required=True)
@click.option("-o", "--output", "output", default=STDOUT, show_default=True,
              help="Write the draft here (- for standard output): written whole or not at all, never over an "
                   "input.")
@click.option("--min-confidence", type=click.Choice(_LEVELS), default="low", show_default=True,
              help="Leave out entries below this confidence. high: the payload showed the role's protocol; "
                   "medium: an answer on the role's port, payload not recognised; low: hints (names, console "
                   "ports).")
@click.option("--rules-dir", type=click.Path(path_type=Path), help="Use another catalog folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def suggest(captures: tuple[str, ...], output: str, min_confidence: str, rules_dir: Path | None, quiet: bool,
            debug: bool) -> None:
    """Draft roles.yaml from CAPTURE files: every host that shows a Citrix or infrastructure role,
    with the evidence and a confidence as a comment beside it, and the roles it could not find.

    The draft is addresses and CIDRs only (names go into the comments) and audits as it is:
    pcap-audit CAPTURE --roles roles.yaml --strict-roles."""
    bar = ProgressBar() if (not quiet and sys.stderr.isatty()) else None
    with cli_signals.stopping(), one_line_errors(debug, bar, lambda: "no output written"):
        from auditor import __version__, conversations
        from auditor.audit import read_captures
        from auditor.capture import open_captures
        from auditor.catalog import load_catalog
        from auditor.parallel import tune_gc
        from auditor.suggest import Confidence, render
        from auditor.suggest import suggest as draft_roles

        protected = Protected()
        for capture in captures:
            if capture != "-":
                protected.add("the capture", capture)
        protected.add_catalog(rules_dir)
        checked = check_outputs([("-o", output)], protected)
        catalog = load_catalog(rules_dir, [])
        holder: list[object] = []

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar(done, total, getattr(holder[0], "frames_read", 0) if holder else 0)

        capture_set = open_captures(list(captures), progress=progress if bar else None)
        holder.append(capture_set)
        tune_gc()
        conv, names = read_captures(capture_set, catalog.server_ports(), progress=bar)
        conversations.share_counts(conv.flows.values())
        vocab = catalog.vocabulary
        name_roles = [(p, role) for role, patterns in vocab.role_hostnames.items() for p in patterns]
        name_roles += [(p, r.destination) for r in catalog.rules for p in r.hostnames]
        draft = draft_roles(conv.flows.values(), names, vocab, name_roles,
                            min_confidence=Confidence[min_confidence.upper()])
        text = render(draft, list(captures), __version__)
        write_atomic([(checked[0], lambda: text)])
        if bar:
            bar.close()
        if not quiet:
            hosts = len({e.text for e in draft.entries})
            click.echo(f"pcap-audit roles suggest: {len(draft.entries)} entries ({hosts} addresses or networks) "
                       f"under {len({e.role for e in draft.entries})} roles; not found: "
                       f"{', '.join(r for r, _ in draft.not_found) or 'none'}"
                       + ("" if checked[0].path is None else f"\n  wrote {checked[0].shown}"), err=True)
    sys.exit(EXIT_OK)
