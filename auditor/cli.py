"""Command line: the only module that prints, exits or opens output files.

`pcap-audit CAPTURE... --roles roles.yaml` runs an audit; `pcap-audit catalog ...` reads the catalog.
"""

from __future__ import annotations

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

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
