"""YAML loading for hand-written files: safe, bounded, duplicate keys rejected, every node's line kept.

Plain PyYAML silently keeps the last of two equal keys (pySigma rejects them; so do we), and it
forgets where a value came from. ``load_yaml`` returns the data together with a ``LineMap`` that
answers "which line is ``rules[3].ports`` on?", so that every error can name file, line and field.

Roles and rule files are written by hand, so three things they never need are refused, each as one
``file:line`` error: more than ``max_config_bytes()`` bytes (read no further, so /dev/zero or a FIFO
stops there), aliases (``*name``: a few hundred bytes of nested aliases expand to gigabytes, the
"billion laughs"; refusing them means nothing is ever expanded) and nesting deeper than MAX_DEPTH
(libyaml's composer recurses in C and a deep enough file overflows the stack). The composer here
pulls libyaml's events and builds the nodes itself, with a stack instead of recursion.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from auditor.errors import AuditorError

_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")

MAX_CONFIG_BYTES_ENV = "PCAP_AUDIT_MAX_CONFIG_BYTES"
"""The environment variable that sets the size limit of roles and rule files, in bytes."""
DEFAULT_MAX_CONFIG_BYTES = 64 * 1024 * 1024
"""64 MiB: a roles file of some 3.5 million addresses; the catalog's largest file is 27 kB."""
MAX_DEPTH = 32
"""Collections nested deeper than this are refused (the catalog's files nest 5 deep, roles files 3)."""


class YamlError(AuditorError):
    """A YAML file that cannot be used at all: unreadable, unparsable or with duplicate keys.

    ``problems`` holds each problem as ``file:line: message``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid YAML"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


# libyaml's parser when PyYAML was built with it (Debian's and the wheels are): the catalog's 22 files
# load in ~0.1 s instead of ~0.5 s, on every run. Same nodes, marks and safe constructors.
_BaseSafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictSafeLoader(_BaseSafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a mapping with two equal keys instead of keeping the last one."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen[key] = line
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class LineMap:
    """Line numbers (1-based) of the nodes of one YAML document, keyed by path.

    Paths look like ``product``, ``rules[3]``, ``rules[3].ports``, ``rules[3].ports[1]``. A mapping
    entry's line is its key's line; a sequence item's line is the item's first line. Asking for a
    path that is not there (a missing field) answers the line of its nearest existing parent.
    """

    def __init__(self, lines: dict[str, int] | None = None) -> None:
        self._lines: dict[str, int] = dict(lines or {})

    def line(self, path: str) -> int:
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return 1
            shorter = _LAST_PART.sub("", path)
            if shorter == path:
                return self._lines.get("", 1)
            path = shorter.lstrip(".")

    def __contains__(self, path: object) -> bool:
        return path in self._lines

    def __len__(self) -> int:
        return len(self._lines)


def join_path(parent: str, key: object) -> str:
    """``join_path('rules[3]', 'ports') == 'rules[3].ports'``; ints index sequences."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _record_lines(node: Node, path: str, out: dict[str, int], dups: list[tuple[int, str]]) -> None:
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key_node.tag != "tag:yaml.org,2002:merge":
                dups.append((line, f"duplicate key {key!r} (first on line {seen[key]})"))
                continue
            seen[key] = line
            child = join_path(path, key)
            out[child] = line
            _record_lines(value_node, child, out, dups)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            child = join_path(path, i)
            out[child] = item.start_mark.line + 1
            _record_lines(item, child, out, dups)


def _mark_line(err: yaml.YAMLError) -> int:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return int(mark.line) + 1 if mark is not None else 1


def max_config_bytes() -> int:
    """The size limit of roles and rule files: $PCAP_AUDIT_MAX_CONFIG_BYTES, else 64 MiB."""
    value = os.environ.get(MAX_CONFIG_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_CONFIG_BYTES
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise AuditorError(f"{MAX_CONFIG_BYTES_ENV}={value[:40]!r}: expected a number of bytes (1 or more)")
    return limit


def read_config(path: Path, name: str) -> bytes:
    """The bytes of a roles or rule file, at most ``max_config_bytes()``; else YamlError naming it.

    Reads limit + 1 bytes at most, so /dev/zero, a FIFO or a capture given by mistake stops there."""
    limit = max_config_bytes()
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            data = b""
            too_large = True
        else:
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
            too_large = len(data) > limit
    except OSError as e:
        raise YamlError([f"{name}:0: cannot read file: {e.strerror or e}"]) from e
    if too_large:
        raise YamlError([f"{name}: larger than {limit} bytes, the limit for roles and rule files "
                         f"(set {MAX_CONFIG_BYTES_ENV} to change it)"])
    return data


def _compose(loader: Any, name: str) -> Node | None:
    """The single document's node tree, built from a StrictSafeLoader's events without recursion.

    Raises YamlError for an alias or nesting deeper than MAX_DEPTH, and yaml's own errors for bad
    syntax (libyaml reports them as the events are pulled)."""
    get_event = loader.get_event
    resolve = loader.resolve
    get_event()  # StreamStartEvent
    if loader.check_event(StreamEndEvent):
        get_event()
        return None
    get_event()  # DocumentStartEvent
    stack: list[SequenceNode | MappingNode] = []
    keys: list[Node | None] = []  # per open mapping: its key waiting for a value
    root: Node
    while True:
        event = get_event()
        cls = type(event)
        node: Node
        if cls is ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(ScalarNode, event.value, event.implicit)
            # The start mark serves as end mark too: nothing reads a scalar's end, and a roles file
            # of millions of addresses holds one mark per scalar fewer.
            node = ScalarNode(tag, event.value, event.start_mark, event.start_mark, event.style)
        elif cls is SequenceStartEvent or cls is MappingStartEvent:
            kind = SequenceNode if cls is SequenceStartEvent else MappingNode
            if len(stack) >= MAX_DEPTH:
                raise YamlError([f"{name}:{event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"])
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(kind, None, event.implicit)
            node = kind(tag, [], event.start_mark, event.end_mark, event.flow_style)
        elif cls is SequenceEndEvent or cls is MappingEndEvent:
            done = stack.pop()
            keys.pop()
            done.end_mark = event.end_mark
            if stack:
                continue
            root = done
            break
        elif cls is AliasEvent:
            raise YamlError([f"{name}:{event.start_mark.line + 1}: YAML alias *{str(event.anchor)[:40]} is not "
                             "allowed in roles and rule files (write the value out)"])
        else:  # pragma: no cover - libyaml sends nothing else inside a document
            raise YamlError([f"{name}:{event.start_mark.line + 1}: cannot parse YAML: unexpected {cls.__name__}"])
        if stack:
            parent = stack[-1]
            if type(parent) is SequenceNode:
                parent.value.append(node)
            elif keys[-1] is None:
                keys[-1] = node
            else:
                parent.value.append((keys[-1], node))
                keys[-1] = None
        if type(node) is not ScalarNode:
            stack.append(node)  # type: ignore[arg-type]
            keys.append(None)
        elif not stack:
            root = node
            break
    get_event()  # DocumentEndEvent
    if not loader.check_event(StreamEndEvent):
        event = get_event()
        raise ComposerError("expected a single document in the stream", root.start_mark,
                            "but found another document", event.start_mark)
    get_event()
    return root


def compose_yaml(text: str, name: str) -> Node | None:
    """The node tree of one YAML document (None when empty), for callers that read nodes.

    Raises YamlError for an alias or too deep nesting, yaml.YAMLError for bad syntax."""
    loader = StrictSafeLoader(text)
    try:
        return _compose(loader, name)
    finally:
        loader.dispose()


def load_yaml_text(text: str | bytes, name: str) -> tuple[Any, LineMap]:
    """Parse one YAML document. ``name`` is how errors refer to the file (``rules/x.yaml``).

    Raises YamlError (never a bare yaml or Unicode error) listing every duplicate key, or the
    first syntax error, each as ``name:line: message``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise YamlError([f"{name}:1: not UTF-8 text ({e.reason} at byte {e.start})"]) from e
    loader = StrictSafeLoader(text)
    try:
        node = _compose(loader, name)
        if node is None:
            return None, LineMap()
        lines: dict[str, int] = {"": node.start_mark.line + 1}
        dups: list[tuple[int, str]] = []
        _record_lines(node, "", lines, dups)
        if dups:
            raise YamlError([f"{name}:{line}: {msg}" for line, msg in sorted(dups)])
        data = loader.construct_document(node)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise YamlError([f"{name}:{_mark_line(e)}: cannot parse YAML: {problem}"]) from e
    finally:
        loader.dispose()
    return data, LineMap(lines)


def load_yaml(path: Path, name: str | None = None) -> tuple[Any, LineMap]:
    """Read and parse ``path``; errors name it as ``name`` (default: the path as given)."""
    label = name if name is not None else str(path)
    return load_yaml_text(read_config(path, label), label)
