"""The typed audit document (report/model.py) -> one self-contained HTML report, as a string or in chunks.

The page must open offline and stay usable for 50,000 flows, so rows travel as JSON in one
``<script type="application/json">`` block and a small inline script pages, sorts and filters them.
Every row's cells are made once, in Python (``report/cells.py``): the page embeds them and the script
only pages, sorts (by keys made there) and filters them; the first page of every table is rendered
here from the same cells, so the report still reads (and its tests can check it) without JavaScript.

Everything taken from the document is treated as hostile (names, SNI and Host come from captures):
control, format and separator characters are shown as ``\\uXXXX``, strings are bounded, the template
is autoescaped, and the JSON block escapes ``<``, ``>``, ``&``, U+2028 and U+2029 so no string can close
the script element.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
from markupsafe import Markup

from auditor import cache, resources
from auditor.model import DISPLAY_CHARS
from auditor.report.cells import (
    MAX_CHARS,
    NO_ROLE,
    Cell,
    fmt_bytes,
    fmt_num,
    fmt_ts,
    safe_text,
    short,
)
from auditor.report.jsondata import plain
from auditor.report.model import AuditDocument, DocumentError
from auditor.report.view import (
    _DUMP,
    DATA_MARK,
    PAGE_SIZE,
    PRINT_ROLE_ROWS,
    PRINT_ROWS,
    _script_safe,
    build_view,
    role_slug,
)

__all__ = [
    "DISPLAY_CHARS",
    "MAX_CHARS",
    "NO_ROLE",
    "PAGE_SIZE",
    "PRINT_ROLE_ROWS",
    "PRINT_ROWS",
    "Cell",
    "ReportDataError",
    "fmt_bytes",
    "fmt_num",
    "fmt_ts",
    "iter_html",
    "render_html",
    "role_slug",
    "safe_text",
    "script_json",
    "short",
]



ReportDataError = DocumentError
"""An audit document that does not have the schema's shape (raised while loading one)."""


def render_html(doc: AuditDocument, *, templates_dir: Path | None = None) -> str:
    """Render the audit document as one self-contained HTML page (``iter_html``, joined).

    Raises ``ReportDataError`` when a required field of the document is missing or of the wrong type.
    """
    return "".join(iter_html(doc, templates_dir=templates_dir))


def iter_html(document: AuditDocument, *, templates_dir: Path | None = None) -> Iterator[str]:
    """The same page in chunks, for writing a large report without holding it whole.

    The page around the data block (first pages of the tables, CSS, JS: under a megabyte) is rendered
    as one string with a placeholder where the data goes; the data block, nearly all of a large report,
    is encoded as it is written: a second walk over the flows encodes and yields a batch at a time, so
    only one batch is held. The first walk (building the view) made every flow's interned cells, so
    what can fail has failed; the second makes the flows' own cells (which only format their typed
    numbers and strings) and encodes them. The hosts' cells, likewise only formatting a HostRow's
    strings, are made as their records are encoded (an audit of many hosts maps hundreds of
    thousands: held whole, they were the page's peak).
    Everything that can fail runs before this returns: ``ReportDataError`` is raised here, never while
    the chunks are being written.
    """
    folder = resources.templates_dir() if templates_dir is None else templates_dir
    env = _environment(folder)
    try:
        view = build_view(document)
        # Flows, rules and hosts reach the page only through the view's cells (already cleaned).
        head = _clean({f.name: plain(getattr(document, f.name)) for f in dataclasses.fields(document)
                       if f.name not in ("flows", "rules", "hosts")})
        page = env.get_template("report.html.j2").render(doc=head, view=view)
    except (KeyError, TypeError, IndexError, jinja2.UndefinedError) as e:
        raise ReportDataError(f"audit document is incomplete for the HTML report: {e!r}") from e
    return _stitch(page.split(DATA_MARK), view.data_chunks)


def _stitch(parts: list[str], data: Callable[[], Iterator[str]]) -> Iterator[str]:
    yield parts[0]
    for part in parts[1:]:
        yield from data()
        yield part


class _CompiledTemplates(jinja2.BytecodeCache):
    """The templates as an earlier run compiled them (auditor/cache.py): the entry is named by this
    code, jinja2's version, the template's name, path and source, so the compiled code is only
    ever of the same source by the same environment. Jinja2 checks the entry's header and checksum
    again as it reads it; an entry it cannot read is compiled and stored again."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = cache.load(self._name(bucket))
        if data is not None:
            try:
                bucket.bytecode_from_string(data)
            except Exception:  # damaged: compiled again
                bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        cache.store(self._name(bucket), bucket.bytecode_to_string())

    @staticmethod
    def _name(bucket: jinja2.bccache.Bucket) -> str:
        return cache.key("template", jinja2.__version__, bucket.key, bucket.checksum)


def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        bytecode_cache=_CompiledTemplates(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def inline(name: str, closing: str) -> Markup:
        # Our own CSS/JS partials, inlined verbatim (not parsed as templates: JS is full of braces).
        text = (folder / name).read_text(encoding="utf-8")
        if closing in text.lower():
            raise ValueError(f"{name} must not contain {closing!r}")
        return Markup(text)

    env.globals["inline_css"] = lambda name: inline(name, "</style")
    env.globals["inline_js"] = lambda name: inline(name, "</script")
    env.filters["num"] = fmt_num
    env.filters["bytes"] = fmt_bytes
    env.filters["ts"] = fmt_ts
    env.filters["short"] = short
    return env


# --- text hygiene ------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """A deep copy of the document with every string passed through ``safe_text``."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def script_json(data: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&', U+2028/U+2029."""
    return Markup(_script_safe(_DUMP(data)))


