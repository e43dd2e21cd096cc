"""`pcap-audit catalog ...`: list, show, validate, export the catalog, and list its roles."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from auditor import cli_outputs as outputs
from auditor import cli_signals
from auditor.catalog import (
    PROTOCOLS,
    Catalog,
    UnknownRoleError,
    export_csv,
    export_json,
    load_catalog,
    normalise,
    validate_files,
)
from auditor.catalog.rule import FlowRule
from auditor.cli_outputs import Output, Protected
from auditor.errors import AuditorError, CatalogError

EXIT_USAGE = 2


class CatalogCliError(click.ClickException):
    """Bad input: one line (one per problem) on standard error, exit status 2."""

    exit_code = EXIT_USAGE


def _error(err: AuditorError) -> CatalogCliError:
    if isinstance(err, CatalogError) and len(err.problems) > 1:
        return CatalogCliError("invalid catalog:\n" + "\n".join(err.problems))
    return CatalogCliError(str(err))


def _load(ctx: click.Context, extra: Sequence[Path] = ()) -> Catalog:
    rules_dir: Path | None = ctx.obj.get("rules_dir") if ctx.obj else None
    try:
        return load_catalog(rules_dir, extra)
    except AuditorError as e:
        raise _error(e) from e
    except FileNotFoundError as e:
        raise CatalogCliError(str(e)) from e


def write_atomic(output: Output, text: str) -> None:
    """Write beside the target then rename, so that a reader never sees half a file (cli_outputs)."""
    with cli_signals.stopping():
        try:
            outputs.write_atomic([(output, lambda: text)])
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: the temporary file is gone
            sys.exit(cli_signals.report_stop(e, "nothing written"))


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


_RULES_OPTION = click.option("--rules", "extra", multiple=True, type=click.Path(path_type=Path),
                             help="A site rule file (same schema as rules/*.yaml); repeatable.")


@click.group("catalog")
@click.option("--rules-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Catalog folder to use instead of the bundled rules/.")
@click.pass_context
def catalog(ctx: click.Context, rules_dir: Path | None) -> None:
    """Read, check and export the catalog of documented Citrix flows."""
    ctx.ensure_object(dict)
    ctx.obj["rules_dir"] = rules_dir


@catalog.command("list")
@click.option("--product", help="Only this product section (case-insensitive; a unique prefix will do).")
@click.option("--role", help="Only rules with this role (or a role it plays) at either end.")
@click.option("--port", type=click.IntRange(0, 65535), help="Only rules covering this port.")
@click.option("--protocol", type=click.Choice(PROTOCOLS, case_sensitive=False), help="Only this protocol.")
@_RULES_OPTION
@click.pass_context
def list_rules(ctx: click.Context, product: str | None, role: str | None, port: int | None,
               protocol: str | None, extra: tuple[Path, ...]) -> None:
    """List rules as a table: id, product, source -> destination, protocols, ports, description."""
    cat = _load(ctx, extra)
    rules: list[FlowRule] = list(cat.rules)
    if product:
        wanted = normalise(product)
        names = [p for p in cat.products() if normalise(p) == wanted] or [
            p for p in cat.products() if normalise(p).startswith(wanted)]
        if not names:
            raise CatalogCliError(f"unknown product {product!r} (known: {', '.join(cat.products())})")
        rules = [r for r in rules if r.product in names]
    if role:
        try:
            roles = cat.vocabulary.expand([cat.vocabulary.resolve(role)])
        except UnknownRoleError as e:
            raise CatalogCliError(str(e)) from e
        rules = [r for r in rules if r.source in roles or r.destination in roles]
    if port is not None:
        rules = [r for r in rules if r.matches_port(port)]
    if protocol:
        rules = [r for r in rules if protocol.lower() in r.protocols]
    rows = [(r.id, r.product, f"{r.source} → {r.destination}", ",".join(r.protocols), r.ports_text or "-",
             r.description) for r in rules]
    if rows:
        click.echo(_table(rows, ("ID", "PRODUCT", "SOURCE → DESTINATION", "PROTO", "PORTS", "DESCRIPTION")))
    click.echo(f"{len(rows)} rule{'s' if len(rows) != 1 else ''}", err=not rows)


@catalog.command("show")
@click.argument("rule_id")
@_RULES_OPTION
@click.pass_context
def show(ctx: click.Context, rule_id: str, extra: tuple[Path, ...]) -> None:
    """Show every field of one rule."""
    cat = _load(ctx, extra)
    rule = cat.by_id(rule_id) or cat.by_id(rule_id.strip().lower())
    if rule is None:
        import difflib

        close = difflib.get_close_matches(rule_id, [r.id for r in cat.rules], n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise CatalogCliError(f"no rule {rule_id!r}{hint}")
    fields: list[tuple[str, str]] = [
        ("id", rule.id), ("product", rule.product), ("source", rule.source),
        ("destination", rule.destination), ("protocols", ", ".join(rule.protocols)),
        ("ports", rule.ports_text or "-"), ("type", rule.type), ("description", rule.description),
        ("bidirectional", _yes(rule.bidirectional)), ("configurable", _yes(rule.configurable)),
        ("one_way", _yes(rule.one_way)), ("loopback_only", _yes(rule.loopback_only)),
        ("hostnames", ", ".join(rule.hostnames) or "-"), ("note", rule.note or "-"),
        ("seed_row", rule.seed_row or "-"), ("source_file", rule.source_file),
    ]
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        click.echo(f"{k.ljust(width)}  {v}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@catalog.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check rule files (site files, or the catalog's own) and list every problem with its location."""
    try:
        base: Catalog | None = _load(ctx)
    except CatalogCliError:
        base = None  # the catalog itself is broken: check the files on their own, with their roles.yaml
    problems = validate_files(list(files), base)
    if problems:
        for p in problems:
            click.echo(p, err=True)
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(f"{len(files)} file{'s' if len(files) != 1 else ''} OK")


@catalog.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output",
              help="Write here instead of standard output: a regular file, new or replaced whole (never a "
                   "device, folder, FIFO or socket, nor a file of the catalog).")
@_RULES_OPTION
@click.pass_context
def export(ctx: click.Context, fmt: str, output: str | None, extra: tuple[Path, ...]) -> None:
    """Export every rule as CSV (one row per rule and protocol) or JSON."""
    target = None
    if output is not None:
        protected = Protected()
        for path in extra:
            protected.add("the rule file", path)
        protected.add_catalog(ctx.obj.get("rules_dir") if ctx.obj else None)
        try:
            target = outputs.check_outputs([("-o", output)], protected, make_folders=False)[0]
        except AuditorError as e:
            raise CatalogCliError(str(e)) from e
    cat = _load(ctx, extra)
    text = export_csv(cat.rules) if fmt == "csv" else export_json(cat.rules)
    if target is None or target.path is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomic(target, text)
    except AuditorError as e:
        raise CatalogCliError(str(e)) from e
    click.echo(f"{len(cat.rules)} rules written to {output}", err=True)


@catalog.command("roles")
@_RULES_OPTION
@click.pass_context
def roles(ctx: click.Context, extra: tuple[Path, ...]) -> None:
    """List the role vocabulary: canonical names, aliases, and which roles each one satisfies."""
    cat = _load(ctx, extra)
    vocab = cat.vocabulary
    rows = []
    for role in vocab.roles.values():
        always = vocab.expand([role.name], features=())
        plays = sorted(always - {role.name})
        plays += sorted(f"{r} (with {vocab.role_feature(r)})" for r in vocab.expand([role.name]) - always)
        kind = f"family:{role.family}" if role.family else ("citrix" if role.citrix else "")
        if role.feature:
            kind = (kind + " " if kind else "") + f"feature:{role.feature}"
        rows.append((role.name, kind, ", ".join(role.aliases) or "-", ", ".join(plays) or "-"))
    click.echo(_table(rows, ("ROLE", "KIND", "ALIASES", "ALSO SATISFIES")))


@catalog.command("features")
@_RULES_OPTION
@click.pass_context
def features(ctx: click.Context, extra: tuple[Path, ...]) -> None:
    """List the deployment features (roles.yaml ``features:``): the roles and rules each one brings."""
    cat = _load(ctx, extra)
    vocab = cat.vocabulary
    for f in cat.features.values():
        roles = sorted(r.name for r in vocab.roles.values() if r.feature == f.id)
        rules = [r.id for r in cat.rules if r.feature == f.id]
        click.echo(f"{f.id}: {f.title}")
        if f.description:
            click.echo(f"  {f.description}")
        if roles:
            click.echo(f"  roles: {', '.join(roles)} (mapping one of them declares the feature)")
        if rules:
            click.echo(f"  rules: {', '.join(rules)}")
        if f.detected_by:
            click.echo(f"  detected from the capture by: {', '.join(f.detected_by)}")
