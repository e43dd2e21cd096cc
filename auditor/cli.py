"""Command line: the only module that prints, exits or opens output files.

`pcap-audit CAPTURE... --roles roles.yaml` runs an audit; `pcap-audit catalog ...` reads the catalog.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys

import click

from auditor import __version__


class AuditGroup(click.Group):
    """A group whose default command is `audit`: `pcap-audit cap.pcapng --roles r.yaml` works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["audit", *args]
        return super().parse_args(ctx, args)


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcap-audit")
def main() -> None:
    """Audit packet captures against the flows Citrix documents.

    \b
    pcap-audit capture.pcapng --roles roles.yaml      audit (writes report.html)
    pcap-audit catalog list --role "Delivery Controller"
    """


def _register() -> None:
    from auditor.cli_audit import audit
    from auditor.cli_catalog import catalog

    main.add_command(audit)
    main.add_command(catalog)


_register()


def run() -> None:
    """The console command (and ``python -m auditor.cli``): ``main``, then an immediate exit.

    A large audit holds millions of objects, and freeing them one by one as the interpreter exits
    took 0.2 s after an audit of 80,000 flows (bench/README.md). Every output is written
    and closed by then, so once standard output and error are flushed (and any process left by an
    error or a stop signal is stopped) the process ends with os._exit, as mypy's command does."""
    try:
        main()  # click's standalone mode ends every run with SystemExit
        status = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    if status not in (0, 1):  # stopped or failed: nothing this process started may outlive it
        from auditor.cli_signals import KILL, stop_children

        stop_children(KILL)
    for child in multiprocessing.active_children():  # pragma: no cover - only after an error
        child.terminate()
        child.join(5)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: what could be written was
            stream.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
