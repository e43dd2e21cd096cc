"""`pcap-audit CAPTURE... --roles roles.yaml`: run an audit, write the outputs, print a summary."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from auditor.errors import AuditorError

EXIT_OK = 0
EXIT_FINDINGS = 1
"""--fail-on named a finding that occurred."""
EXIT_BAD_INPUT = 2
"""Bad usage or input (one clear line on stderr)."""

FAIL_ON_KINDS = ("unexpected", "failing", "missing")


def fail(message: str) -> NoReturn:
    click.echo(f"pcap-audit: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def cannot_write(path: Path, e: OSError) -> str:
    """The one line for an output that could not be written."""
    return f"{path}: cannot write: {e.strerror or e}"


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(outputs: dict[Path, Callable[[], str | Iterable[str]]]) -> None:
    """Write every output to a temporary file beside it, then put them all in place: whole or not at
    all. Each output is produced only when its turn comes, as one string or in chunks. If one cannot be
    put in place, those already replaced get their previous content back."""
    staged: list[tuple[str, Path]] = []
    moved: list[tuple[Path, str | None]] = []  # (output, backup of what it replaced)
    try:
        fds: list[int] = []
        for path in outputs:
            if path.is_dir():
                raise AuditorError(f"{path}: is a directory, cannot write the output there")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as e:
                raise AuditorError(cannot_write(path, e)) from e
            staged.append((tmp, path))
            fds.append(fd)
        _produce_all(list(zip(fds, outputs.values(), outputs, strict=True)))
        mode = _file_mode()
        for tmp, path in staged:
            try:
                os.chmod(tmp, mode)  # mkstemp makes 0600; a report gets the permissions any new file would
                backup = None
                if path.exists():
                    backup = tempfile.mktemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
                    os.link(path, backup)
                moved.append((path, backup))
                os.replace(tmp, path)
            except OSError as e:
                raise AuditorError(cannot_write(path, e)) from e
    except BaseException:
        for path, backup in reversed(moved):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                elif path.exists():
                    path.unlink()
        raise
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for _, backup in moved:
            if backup is not None and os.path.exists(backup):
                os.unlink(backup)


def _produce(fd: int, produce: Callable[[], str | Iterable[str]]) -> None:
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        content = produce()
        if isinstance(content, str):
            fh.write(content)
        else:
            for chunk in content:
                fh.write(chunk)


def _produce_all(jobs: list[tuple[int, Callable[[], str | Iterable[str]], Path]]) -> None:
    """Write each output into its staged file. With two cores and more than one output, all but the
    last are written by forked processes meanwhile (the HTML and the JSON of a large audit take a
    second or more each); a child's failure comes back as one line."""
    from auditor.parallel import cpus

    forking = len(jobs) > 1 and hasattr(os, "fork") and sys.platform.startswith("linux") and cpus() > 1
    children: list[tuple[int, int, Path]] = []
    try:
        for fd, produce, path in jobs[:-1] if forking else []:
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; its result is checked by the parent
                code = 0
                try:
                    os.close(rfd)
                    _produce(fd, produce)
                except BaseException as e:
                    code = 1
                    why = cannot_write(path, e) if isinstance(e, OSError) else \
                        f"{path}: internal error: {type(e).__name__}: {e}"
                    os.write(wfd, why.encode("utf-8", "replace")[:4000])
                os._exit(code)
            os.close(wfd)
            os.close(fd)
            children.append((pid, rfd, path))
        for fd, produce, path in jobs[len(children):]:
            try:
                _produce(fd, produce)
            except OSError as e:
                raise AuditorError(cannot_write(path, e)) from e
    finally:
        errors = []
        for pid, rfd, path in children:
            with os.fdopen(rfd, "rb") as fh:
                why = fh.read().decode("utf-8", "replace")
            _, status = os.waitpid(pid, 0)
            if status:
                errors.append(why or f"{path}: the process writing it ended with status {status}")
    if errors:
        raise AuditorError(errors[0])


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


def _summary_lines(doc: dict[str, Any], written: list[Path]) -> list[str]:
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
    features = doc.get("features", [])
    if features:
        lines.append("  features in use: " + ", ".join(f"{f['id']} ({f['how'].split(':')[0]})" for f in features))
    for w in doc.get("warnings", [])[:10]:
        lines.append(f"  roles warning: {w['message']}")
    if len(doc.get("warnings", [])) > 10:
        lines.append(f"  ... and {len(doc['warnings']) - 10} more roles warnings in the report")
    failing = [f for f in doc["flows"] if f["failing"]]
    unexpected = [f for f in doc["flows"] if f["classification"] == "unexpected"]
    for title, items in (("failing expected flows", failing), ("unexpected flows", unexpected)):
        if items:
            lines.append(f"  {title}:")
            for f in sorted(items, key=lambda f: -f["packets"])[:5]:
                lines.append(f"    {f['initiator']} -> {f['responder']} {f['protocol']}/{f['port']} "
                             f"{f['outcome']} ({', '.join(f['rule_ids']) or f['reason']})")
            if len(items) > 5:
                lines.append(f"    ... and {len(items) - 5} more in the report")
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


def _parse_fail_on(value: str | None) -> set[str]:
    if not value:
        return set()
    kinds = {v.strip() for v in value.split(",") if v.strip()}
    bad = kinds - set(FAIL_ON_KINDS)
    if bad:
        raise click.BadParameter(f"unknown kind(s) {', '.join(sorted(bad))}; choose from "
                                 f"{', '.join(FAIL_ON_KINDS)}", param_hint="--fail-on")
    return kinds


def findings_hit(doc: dict[str, Any], kinds: set[str]) -> list[str]:
    s = doc["summary"]
    hit = []
    if "unexpected" in kinds and s["unexpected"]:
        hit.append("unexpected")
    if "failing" in kinds and (s["expected_failing"] or s["rules"]["failing"]):
        hit.append("failing")
    if "missing" in kinds and s["rules"]["missing"]:
        hit.append("missing")
    return hit


@click.command("audit")
@click.argument("captures", nargs=-1, required=True)
@click.option("--roles", "roles_path", required=True, type=click.Path(path_type=Path),
              help="roles.yaml: which host plays which Citrix role.")
@click.option("-o", "--output", "html_path", type=click.Path(path_type=Path), default=Path("report.html"),
              show_default=True, help="HTML report.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the audit as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Also write one CSV row per flow.")
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
              help="Processes to read with (0: automatic: two on two or more cores when one of the following "
                   "applies, else one). Uncompressed pcap (Ethernet) and pcapng files (64 MB or more, one or "
                   "several in a row) are split by byte ranges: a second process walks the later part while this "
                   "one walks the start; a compressed file of 16 MB or more is decompressed by a second "
                   "process. Files of short conversations (a third or more of the frames at their start are "
                   "handshakes, DNS and others that need the slow path) are instead read by two processes "
                   "that each keep half of the conversations. All give exactly the results of one process "
                   "(1.1-1.4x on the bench captures; a flood or scan that reaches the bounds is read again "
                   "by one). Other inputs with -j N: N processes each walk every packet and keep their "
                   "share of the conversations.")
@click.option("--no-checksums", is_flag=True,
              help="Do not verify TCP/UDP checksums (by default: every packet of the first 10,000 frames of "
                   "each input, then every TCP SYN, FIN and RST and 1 in 64 of the rest; bad checksums are "
                   "counted, never dropped).")
@click.option("--fail-on", "fail_on", metavar="KINDS",
              help="Exit 1 when any of these findings occur: unexpected,failing,missing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def audit(captures: tuple[str, ...], roles_path: Path, html_path: Path, json_path: Path | None,
          csv_path: Path | None, no_html: bool, extra_rules: tuple[Path, ...], rules_dir: Path | None,
          vantage: tuple[str, ...], catalog_layers: str, strict_roles: bool, engine: str, jobs: int,
          no_checksums: bool, fail_on: str | None, quiet: bool, debug: bool) -> None:
    """Audit CAPTURE files (pcap/pcapng, optionally compressed; - for stdin) against the catalog.

    NetScaler traces (nstrace 1.0 to 3.5) are read as a second process converts their frames to pcap.
    A file in another capture format that Wireshark reads (Microsoft Network Monitor, snoop, Sniffer,
    CommView...) is read when Wireshark's tools are installed: from a pcapng copy that editcap makes
    of it, or else through tshark."""
    from auditor.audit import AuditRequest, run_audit
    from auditor.parallel import tune_gc
    from auditor.report.tabular import iter_csv, iter_json

    kinds = _parse_fail_on(fail_on)
    protected = {Path(str(p)).resolve() for p in (*captures, roles_path, *extra_rules) if str(p) != "-"}
    for out in (None if no_html else html_path, json_path, csv_path):
        if out is not None and out.resolve() in protected:
            fail(f"{out}: is one of the inputs; inputs are never overwritten (choose another output name)")
    bar = ProgressBar() if (not quiet and sys.stderr.isatty()) else None
    progress: Callable[[int, int, int], None] | None = bar
    request = AuditRequest(
        inputs=list(captures), roles_path=roles_path, rules_dir=rules_dir, extra_rules=list(extra_rules),
        vantage=list(vantage), document_only=catalog_layers == "document", strict_roles=strict_roles,
        engine=engine, command_line=shlex.join(["pcap-audit", *sys.argv[1:]]),
        progress=progress, jobs=jobs, verify_checksums=not no_checksums,
        fail_on=tuple(kinds),
    )
    tune_gc()
    try:
        outcome = run_audit(request)
        doc = outcome.doc
        outputs: dict[Path, Callable[[], str | Iterable[str]]] = {}
        if json_path:
            outputs[json_path] = lambda: iter_json(outcome.document)
        if csv_path:
            outputs[csv_path] = lambda: iter_csv(outcome.document)
        if not no_html:
            from auditor.report.html import iter_html

            outputs[html_path] = lambda: iter_html(outcome.document)
        write_atomic(outputs)
    except AuditorError as e:
        if bar:
            bar.close()
        if debug:
            traceback.print_exc()
        fail(str(e))
    except KeyboardInterrupt:
        if bar:
            bar.close()
        click.echo("pcap-audit: interrupted; no output written", err=True)
        sys.exit(130)
    except OSError as e:
        if debug:
            traceback.print_exc()
        fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
    except Exception as e:  # a bug, not bad input: still one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for a traceback)")
    if bar:
        bar.close()
    if not quiet:
        try:
            for line in _summary_lines(doc, list(outputs)):
                click.echo(line)
            sys.stdout.flush()
        except BrokenPipeError:
            # Whoever reads the summary stopped early (`| head`): the outputs are written, and the
            # exit status stays the audit's (click would exit 1, which means findings here).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    hit = findings_hit(doc, kinds)
    if hit:
        if not quiet:
            click.echo(f"  --fail-on: {', '.join(hit)} found", err=True)
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)
