"""YAML loading for hand-written files: safe, duplicate keys rejected, every node's line kept.

Plain PyYAML silently keeps the last of two equal keys (pySigma rejects them; so do we), and it
forgets where a value came from. ``load_yaml`` returns the data together with a ``LineMap`` that
answers "which line is ``rules[3].ports`` on?", so that every error can name file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from auditor.errors import AuditorError

_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")


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
        node = loader.get_single_node()
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
    except RecursionError as e:
        raise YamlError([f"{name}:1: cannot parse YAML: nested too deeply"]) from e
    finally:
        loader.dispose()
    return data, LineMap(lines)


def load_yaml(path: Path, name: str | None = None) -> tuple[Any, LineMap]:
    """Read and parse ``path``; errors name it as ``name`` (default: the path as given)."""
    label = name if name is not None else str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise YamlError([f"{label}:0: cannot read file: {e.strerror or e}"]) from e
    return load_yaml_text(raw, label)
