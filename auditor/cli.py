"""Command line: the only module that prints, exits or opens output files.

`pcap-audit CAPTURE... --roles roles.yaml` runs an audit; `pcap-audit catalog ...` reads the catalog;
`pcap-audit roles suggest CAPTURE...` drafts roles.yaml; `pcap-audit diff OLD NEW` compares audits.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import sys
from typing import IO, Any

import click

from auditor import __version__
from auditor.capture.native import KERNEL

PROG = "pcap-audit"


class UsageLine(click.ClickException):
    """A usage error (unknown option, missing argument, bad value) shown as the one line every other
    error gets, instead of click's block of usage, hint, blank line and error."""

    exit_code = 2  # EXIT_BAD_INPUT (cli_audit.py)

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(" ".join(error.format_message().split()))
        self.command = _command_path(error.ctx)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: error: {self.message} (see {self.command} --help)", file=file, err=file is None)


def _command_path(ctx: click.Context | None) -> str:
    """`pcap-audit catalog list`, however the program was started (`python -m auditor.cli`). Click
    raises an option lacking its value without a context: the hint then names the program."""
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join([PROG, *reversed(names)])


COMMANDS = {"audit": "auditor.cli_audit", "catalog": "auditor.cli_catalog", "diff": "auditor.cli_diff",
            "roles": "auditor.cli_roles"}
"""Each command (a click command of that name in that module), imported when it is asked for."""


class AuditGroup(click.Group):
    """A group whose default command is `audit`: `pcap-audit cap.pcapng --roles r.yaml` works.

    A capture file named like a command (`roles`, `diff`, `catalog`) is audited when written as a path
    (`pcap-audit ./roles`) or after `--` (`pcap-audit -- roles --roles r.yaml`): a leading `--` means
    "the default command", and what follows are its arguments.

    Usage errors of the group and of every command under it leave as UsageLine: one line, status 2
    (a group called without arguments still shows its help)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] == "--":
            rest = args[1:]
            # A first word that looks like an option stays a capture: everything after -- is one then.
            args = ["audit", "--", *rest] if rest and rest[0].startswith("-") and rest[0] != "-" else ["audit", *rest]
        elif args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
            args = ["audit", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command's module is imported when the command is asked for: an audit does not import
        the other commands' modules."""
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        command = getattr(importlib.import_module(where), cmd_name)
        assert isinstance(command, click.Command)
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise UsageLine(e) from e

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise UsageLine(e) from e


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcap-audit",
                      message=f"%(prog)s, version %(version)s\nkernel: {KERNEL.description}")
def main() -> None:
    """Audit packet captures against the flows Citrix documents.

    \b
    pcap-audit capture.pcapng --roles roles.yaml      audit (writes report.html)
    pcap-audit catalog list --role "Delivery Controller"
    pcap-audit roles suggest capture.pcapng -o roles.yaml   draft roles.yaml
    pcap-audit ./roles --roles roles.yaml             a capture named like a command
    """


_ENDED: list[SystemExit] = []
"""The exit's exception, kept until the process ends (``run``)."""


def run() -> None:
    """The console command (and ``python -m auditor.cli``): ``main``, then an immediate exit.

    A large audit holds millions of objects, and freeing them one by one as the interpreter exits
    took 0.2 s after an audit of 80,000 flows (bench/README.md). Every output is written
    and closed by then, so once standard output and error are flushed (and any process left by an
    error or a stop signal is stopped) the process ends with os._exit, as mypy's command does. The
    exit's exception is kept until then: its traceback holds the command's frames, and with them the
    audit, which would otherwise be freed as the exception is dropped (0.04 s of 60,000 flows)."""
    try:
        main()  # click's standalone mode ends every run with SystemExit
        status = 0
    except SystemExit as e:
        _ENDED.append(e)
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
