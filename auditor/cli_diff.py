"""`pcap-audit diff OLD.json NEW.json`: compare two audits, write the outputs, print a summary."""

from __future__ import annotations

import os
import stat
import sys
import traceback
from pathlib import Path

import click

from auditor.cli_audit import EXIT_FINDINGS, EXIT_OK, fail, parse_fail_on
from auditor.cli_outputs import Producer, Protected, check_outputs, write_atomic
from auditor.errors import AuditorError


def _read(path: Path) -> bytes:
    """An input's bytes: a regular file or a pipe (``<(...)``); never a directory or a device."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise AuditorError(f"{path}: is a directory, not an audit JSON")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise AuditorError(f"{path}: not a regular file, not an audit JSON")
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise AuditorError(f"{path}: cannot read: {e.strerror or e}") from e


@click.command("diff")
@click.argument("old", metavar="OLD.json", type=click.Path(path_type=Path))
@click.argument("new", metavar="NEW.json", type=click.Path(path_type=Path))
@click.option("-o", "--output", "html_path", type=click.Path(path_type=Path),
              help="Write the diff as one self-contained HTML page.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the diff as JSON.")
@click.option("--fail-on", "fail_on", metavar="KINDS",
              help="Exit 1 when any of these is new or worse in NEW: unexpected (a flow unexpected that was "
                   "not), failing (a flow or rule failing that was not), missing (a rule missing that was "
                   "not), mismatch (a flow whose payload its port's rules refuse, that was not).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on standard output.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def diff(old: Path, new: Path, html_path: Path | None, json_path: Path | None, fail_on: str | None,
         quiet: bool, debug: bool) -> None:
    """Compare two audits (their --json files): a baseline OLD.json and today's NEW.json.

    Flows that appeared, disappeared, or changed classification, outcome or application protocol;
    rules whose status changed, or that only one catalog has; each side's inputs, catalog and schema.
    Exit status: 0 done, 1 when --fail-on names something new or worse in NEW, 2 bad usage or input."""
    from auditor.parallel import paused_gc
    from auditor.report.diff import compare, index_audit, load_audit
    from auditor.report.diff_render import iter_json, render_html, render_text

    kinds = parse_fail_on(fail_on)
    try:
        # No reference cycles are made here, and the collector's passes over a large index while the
        # next document is parsed measured several times the cost of the parse itself.
        with paused_gc():
            protected = Protected()
            protected.add("the old audit", old)
            protected.add("the new audit", new)
            named = [(option, str(p)) for option, p in (("--json", json_path), ("-o", html_path)) if p is not None]
            checked = check_outputs(named, protected)
            # One document at a time: each is reduced to its index before the next is read.
            old_index = index_audit(load_audit(_read(old), str(old)), str(old))
            new_index = index_audit(load_audit(_read(new), str(new)), str(new))
            result = compare(old_index, new_index)
            del old_index, new_index
            producers: dict[str, Producer] = {"--json": lambda: iter_json(result, kinds),
                                              "-o": lambda: render_html(result, kinds)}
            write_atomic([(out, producers[out.option]) for out in checked])
    except AuditorError as e:
        if debug:
            traceback.print_exc()
        fail(str(e))
    except KeyboardInterrupt:
        click.echo("pcap-audit: interrupted; no output written", err=True)
        sys.exit(130)
    except Exception as e:  # a bug, not bad input: still one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for a traceback)")
    if not quiet:
        try:
            click.echo(render_text(result, kinds), nl=False)
            for out in checked:
                click.echo(f"  wrote {out.shown}")
            sys.stdout.flush()
        except BrokenPipeError:
            # A reader that stopped early (`| head`): the exit status stays the diff's.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_FINDINGS if result.hit(kinds) else EXIT_OK)
