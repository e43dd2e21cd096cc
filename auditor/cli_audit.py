"""`pcap-audit CAPTURE... --roles roles.yaml`: run an audit, write the outputs, print a summary."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from auditor import cli_signals
from auditor.cli_outputs import Output, Producer, Protected, check_outputs, write_atomic
from auditor.criteria import FAIL_ON_KINDS, normalise_kinds
from auditor.errors import AuditorError

EXIT_OK = 0
EXIT_FINDINGS = 1
"""--fail-on named a finding that occurred."""
EXIT_BAD_INPUT = 2
"""Bad usage or input (one clear line on stderr)."""



def fail(message: str) -> NoReturn:
    click.echo(f"pcap-audit: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def one_line_errors(debug: bool, bar: ProgressBar | None, stopped: Callable[[], str]) -> Iterator[None]:
    """A command's body: bad input (AuditorError, OSError) and a bug each end it with one line and
    exit status 2 (and a traceback with --debug); a stop (Ctrl-C, SIGTERM, SIGHUP) with the line
    cli_signals.report_stop writes, saying ``stopped()`` of the outputs."""
    try:
        yield
    except AuditorError as e:
        if bar:
            bar.close()
        if debug:
            traceback.print_exc()
        fail(str(e))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM or SIGHUP (cli_signals.Stopped)
        if bar:
            bar.close()
        sys.exit(cli_signals.report_stop(e, stopped()))
    except OSError as e:
        if debug:
            traceback.print_exc()
        fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
    except Exception as e:  # a bug, not bad input: still one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for a traceback)")


class ProgressBar:
    """Bytes read of total and packets/s on stderr; drawn only on a terminal."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int, packets: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = packets / elapsed
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r[{bar:<30}] {frac:4.0%} {done / 1e6:,.0f}/{total / 1e6:,.0f} MB  {rate:,.0f} packets/s"
        else:
            text = f"\r{done / 1e6:,.0f} MB  {rate:,.0f} packets/s"
        click.echo(text, nl=False, err=True)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            click.echo("\r" + " " * 78 + "\r", nl=False, err=True)


SUMMARY_FLOWS = 5
"""Flows the summary lists of the failing and of the unexpected, those with the most packets."""


def _summary_lines(doc: dict[str, Any], written: list[str]) -> list[str]:
    s = doc["summary"]
    r = s["rules"]
    lines = [
        f"pcap-audit {doc['tool']['version']}: {len(doc['inputs'])} input(s), {s['packets']:,} packets, "
        f"{s['connections']:,} connections, {s['flows']:,} flows",
        f"  flows: {s['expected']} expected ({s['expected_failing']} failing), {s['unexpected']} unexpected, "
        f"{s['unmapped']} unmapped",
        f"  rules: {r['observed']} observed, {r['failing']} failing, {r['missing']} missing (not seen in this "
        f"capture), {r.get('covered', 0)} covered by an alternative, {r['not-observable']} not observable, "
        f"{r['not-applicable']} not applicable",
    ]
    if s.get("expected") or s.get("mismatched"):
        lines.append(f"  protocol evidence: {s.get('verified', 0)} expected flows verified by their payload, "
                     f"{s.get('unverified', 0)} unverified (port only), {s.get('mismatched', 0)} protocol-mismatch")
    features = doc.get("features", [])
    if features:
        lines.append("  features in use: " + ", ".join(f"{f['id']} ({f['how'].split(':')[0]})" for f in features))
    for w in doc.get("warnings", [])[:10]:
        lines.append(f"  roles warning: {w['message']}")
    if len(doc.get("warnings", [])) > 10:
        lines.append(f"  ... and {len(doc['warnings']) - 10} more roles warnings in the report")
    for title, (count, items) in (("failing expected flows", doc["failing"]),
                                  ("unexpected flows", doc["unexpected"])):
        if count:
            lines.append(f"  {title}:")
            for f in items:
                refused = f.get("refused_by") or []
                who = f"; {refused[0]['text']}" if refused and f["failing"] else ""
                app = f.get("app_protocol") or "unknown"
                svc = f"{f['protocol']}/{f['port']}" + (f" ({app})" if app != "unknown" else "")
                why = ", ".join(f["rule_ids"]) or f["reason"]
                if f["reason"] == "protocol-mismatch" and f.get("reason_text"):
                    why = f"{why}: {f['reason_text']}"
                lines.append(f"    {f['initiator']} -> {f['responder']} {svc} {f['outcome']} ({why}){who}")
            if count > SUMMARY_FLOWS:
                lines.append(f"    ... and {count - SUMMARY_FLOWS} more in the report")
    na = doc["not_audited"]
    skipped = sum(na["malformed"].values()) + sum(na["unsupported"].values())
    if skipped or na["summarised_flows"]:
        lines.append(f"  not audited: {skipped} packets malformed or unsupported, "
                     f"{na['summarised_connections']} connections summarised")
    for inp in doc["inputs"]:
        for w in inp["warnings"]:
            lines.append(f"  warning: {inp['path']}: {w}")
    for p in written:
        lines.append(f"  wrote {p}")
    return lines


def parse_fail_on(value: str | None) -> tuple[str, ...]:
    """--fail-on's comma-separated kinds, in criteria.FAIL_ON_KINDS order (the audit's and the
    diff's); a usage error names any other."""
    kinds = {v.strip() for v in (value or "").split(",") if v.strip()}
    bad = kinds - set(FAIL_ON_KINDS)
    if bad:
        raise click.BadParameter(f"unknown kind(s) {', '.join(sorted(bad))}; choose from "
                                 f"{', '.join(FAIL_ON_KINDS)}", param_hint="--fail-on")
    return normalise_kinds(kinds)


def _inputs(captures: tuple[str, ...], roles_path: Path, extra_rules: tuple[Path, ...],
            rules_dir: Path | None) -> Protected:
    """What the audit reads, which no output may replace: the captures, the roles file, the rule
    files, and every file of the catalog folder and of the report templates."""
    from auditor import resources

    protected = Protected()
    for capture in captures:
        if capture != "-":
            protected.add("the capture", capture)
    protected.add("the roles file", roles_path)
    for path in extra_rules:
        protected.add("the rule file", path)
    protected.add_catalog(rules_dir)
    with contextlib.suppress(FileNotFoundError):
        protected.add_folder("the report templates folder", resources.templates_dir())
    return protected


class _ConnLog:
    """Connections as they close, spooled to a temporary file (memory stays that of the live
    connections), then written out whole with Zeek's header when the outputs are put in place."""

    def __init__(self) -> None:
        import tempfile
        import time

        from auditor.report import connlog

        self._connlog = connlog
        self.opened = time.time()
        # Closed by text() once written out, or with the process: it outlives this call on purpose.
        self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=8 << 20, mode="w+", encoding="utf-8", newline="")
        self._row = connlog.row

    def add(self, conn: Any) -> None:
        self._spool.write(self._row(conn))

    def text(self) -> Iterable[str]:
        import time

        yield self._connlog.header(self.opened)
        self._spool.seek(0)
        while chunk := self._spool.read(1 << 20):
            yield chunk
        yield self._connlog.footer(time.time())
        self._spool.close()


def _write_order(outputs: list[Output]) -> list[Output]:
    """The order outputs are written in: JSON, CSV, HTML, then standard output (cli_outputs writes
    the last one in this process, the others in forked processes meanwhile)."""
    order = {"--json": 0, "--csv": 1, "--conn-log": 2, "--parquet": 3, "-o": 4}
    return sorted(outputs, key=lambda out: (out.path is None, order[out.option]))


@click.command("audit")
@click.argument("captures", nargs=-1, required=True)
@click.option("--roles", "roles_path", required=True, type=click.Path(path_type=Path),
              help="roles.yaml: which host plays which Citrix role.")
@click.option("-o", "--output", "html_path", default="report.html", show_default=True,
              help="HTML report (- for standard output). Outputs are regular files, new or replaced whole; "
                   "never a device, folder, FIFO or socket, nor an input.")
@click.option("--json", "json_path", help="Also write the audit as JSON (- for standard output).")
@click.option("--csv", "csv_path", help="Also write one CSV row per flow (- for standard output).")
@click.option("--conn-log", "conn_log_path",
              help="Also write the connections as a Zeek conn.log (TSV with Zeek's header; zeek-cut reads it), "
                   "streamed as they close. The conversations are then read by one process.")
@click.option("--parquet", "parquet_path",
              help="Also write the flows as Parquet (the CSV's columns, typed); needs pyarrow: "
                   "pip install 'pcap-audit[parquet]'.")
@click.option("--no-html", is_flag=True, help="Do not write the HTML report.")
@click.option("--rules", "extra_rules", multiple=True, type=click.Path(path_type=Path),
              help="Site rule file (catalog schema); repeatable.")
@click.option("--rules-dir", type=click.Path(path_type=Path), help="Use another catalog folder.")
@click.option("--vantage", multiple=True,
              help="Where the capture was taken: an address, CIDR, range or role; repeatable, and added to "
                   "roles.yaml's vantage: list. Rules with neither side there are not observable. Default: "
                   "roles.yaml's list, else detected when every packet touches one host.")
@click.option("--catalog", "catalog_layers", type=click.Choice(["full", "document"]), default="full",
              show_default=True,
              help="full: Citrix's ports document and the supplement of flows Citrix documents elsewhere "
                   "(each rule cites its page); document: the ports document alone. --rules files count "
                   "under either.")
@click.option("--strict-roles", is_flag=True,
              help="Treat roles.yaml warnings (entries that matched nothing, names the capture never "
                   "resolved, overlaps, CIDRs with host bits) as errors: exit 2.")
@click.option("--engine", type=click.Choice(["fast", "tshark"]), default="fast", show_default=True,
              help="fast: the built-in reader (a full audit of the 10M-packet bench capture takes a fifth of "
                   "the time of tshark's conversation table alone and 0.04x its memory; about its time on "
                   "captures of very short conversations). tshark: decode through tshark -T fields, for link "
                   "types and tunnels the fast path does not know, and as a cross-check: the same records, "
                   "payloads included; about 25,000 packets/s here (7.8 s for 200,000 packets of the bench "
                   "capture), so 40 s or more per million packets.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes to read with (0: automatic: one, plus, on two or more cores, a second that "
                   "decompresses a compressed file of 16 MB or more, or reads the name evidence of uncompressed "
                   "files of 64 MiB or more that carry names; 1: one process). With N > 1 the inputs are read "
                   "as chunks on up to N processes: each file, and uncompressed pcap/pcapng files of 64 MB or "
                   "more cut in N byte ranges; the chunks' results merge exactly into one process's result (a "
                   "conversation that spans chunks is one conversation). It pays on archives whose files span "
                   "many idle timeouts; on one dense file it can be slower than one process (docs/scale.md).")
@click.option("--no-checksums", is_flag=True,
              help="Do not verify TCP/UDP checksums (by default: every packet in the first 4 MiB of each "
                   "input, then every TCP SYN, FIN and RST and the packets whose timestamp in microseconds is a "
                   "multiple of 61, 1 in 61 of the rest; bad checksums are counted, never dropped).")
@click.option("--scheduler", metavar="ADDRESS", envvar="DASK_SCHEDULER_ADDRESS",
              help="Read the inputs on an existing Dask distributed cluster (tcp://host:8786; also from "
                   "DASK_SCHEDULER_ADDRESS): each file is a chunk a worker reads, the results are merged here "
                   "exactly as one process would read them. The workers must read the same paths (a shared "
                   "filesystem) and have pcap-audit installed (pip install 'pcap-audit[dask]').")
@click.option("--fail-on", "fail_on", metavar="KINDS",
              help="Exit 1 when any of these findings occur: unexpected,failing,missing,mismatch "
                   "(mismatch: a flow whose payload its documented port's rules refuse).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def audit(captures: tuple[str, ...], roles_path: Path, html_path: str, json_path: str | None,
          csv_path: str | None, conn_log_path: str | None, parquet_path: str | None, no_html: bool,
          extra_rules: tuple[Path, ...], rules_dir: Path | None,
          vantage: tuple[str, ...], catalog_layers: str, strict_roles: bool, engine: str, jobs: int,
          no_checksums: bool, scheduler: str | None, fail_on: str | None, quiet: bool, debug: bool) -> None:
    """Audit CAPTURE files (pcap/pcapng, optionally compressed; - for stdin) against the catalog.

    NetScaler traces (nstrace 1.0 to 3.5) are read as a second process converts their frames to pcap.
    A file in another capture format that Wireshark reads (Microsoft Network Monitor, snoop, Sniffer,
    CommView...) is read when Wireshark's tools are installed: from a pcapng copy that editcap makes
    of it, or else through tshark."""
    kinds = parse_fail_on(fail_on)
    named = [(option, value) for option, value in (("-o", None if no_html else html_path), ("--json", json_path),
                                                   ("--csv", csv_path), ("--conn-log", conn_log_path),
                                                   ("--parquet", parquet_path)) if value is not None]
    bar = ProgressBar() if (not quiet and sys.stderr.isatty()) else None
    progress: Callable[[int, int, int], None] | None = bar
    written = False

    def stopped() -> str:
        return "the outputs are written" if written else "no output written"

    with cli_signals.stopping(), one_line_errors(debug, bar, stopped):
        from auditor.audit import AuditRequest, run_audit
        from auditor.parallel import tune_gc
        from auditor.report.tabular import iter_csv, iter_json

        # Every output is checked before any work: an hour of reading must not end in "is a directory".
        checked = check_outputs(named, _inputs(captures, roles_path, extra_rules, rules_dir))
        if parquet_path is not None:
            from auditor.report import parquet

            if not parquet.available():
                raise AuditorError("--parquet needs pyarrow: pip install 'pcap-audit[parquet]' "
                                   "(or pip install pyarrow)")
        conn_log = _ConnLog() if conn_log_path is not None else None
        request = AuditRequest(
            inputs=list(captures), roles_path=roles_path, rules_dir=rules_dir, extra_rules=list(extra_rules),
            vantage=list(vantage), document_only=catalog_layers == "document", strict_roles=strict_roles,
            engine=engine, command_line=shlex.join(["pcap-audit", *sys.argv[1:]]),
            progress=progress, jobs=jobs, verify_checksums=not no_checksums, fail_on=kinds,
            connection_sink=conn_log.add if conn_log is not None else None, scheduler=scheduler or None,
        )
        tune_gc()
        outcome = run_audit(request)
        document = outcome.document
        renderers: dict[str, Producer] = {"--json": lambda: iter_json(document),
                                          "--csv": lambda: iter_csv(document)}
        if not no_html:
            from auditor.report.html import iter_html

            renderers["-o"] = lambda: iter_html(document)
        if conn_log is not None:
            renderers["--conn-log"] = conn_log.text
        if parquet_path is not None:
            from auditor.report.parquet import render_parquet

            renderers["--parquet"] = lambda: render_parquet(document)
        write_atomic([(out, renderers[out.option]) for out in _write_order(checked)])
        written = True
        if bar:
            bar.close()
        if not quiet:
            doc = _summary_doc(document)
            _print_summary(doc, checked)
    hit = list(document.criteria.hits) if document.criteria is not None else []
    if hit:
        if not quiet:
            click.echo(f"  --fail-on: {', '.join(hit)} found", err=True)
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)


def _summary_doc(document: Any) -> dict[str, Any]:
    """What the text summary reads, as plain data: the document's head, and of the failing and of
    the unexpected flows their count and the SUMMARY_FLOWS with the most packets (the rows of no
    other flow are built)."""
    from auditor.report.document import top_findings
    from auditor.report.jsondata import plain

    doc = {name: plain(getattr(document, name))
           for name in ("tool", "summary", "features", "warnings", "not_audited", "inputs")}
    for kind, (count, rows) in top_findings(document.flows, SUMMARY_FLOWS).items():
        doc[kind] = (count, [plain(f) for f in rows])
    return doc


def _print_summary(doc: dict[str, Any], outputs: list[Output]) -> None:
    # With an output on standard output, the summary goes to standard error.
    to_stderr = any(out.path is None for out in outputs)
    try:
        for line in _summary_lines(doc, [out.shown for out in outputs]):
            click.echo(line, err=to_stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever reads the summary stopped early (`| head`): the outputs are written, and the
        # exit status stays the audit's (click would exit 1, which means findings here).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
