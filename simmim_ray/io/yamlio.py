"""Reading YAML the user gives (config, space, --points, --set values): safe, bounded, strict.

Safe: no tags beyond plain data (`!!python/...` is refused). Bounded before or while parsing: file size, nesting
depth, and the size of the document once aliases are expanded (an "alias bomb" of nine nested anchors is a few
hundred bytes and 10^9 nodes). Strict: a key given twice is an error, not silently the last value.

Two YAML 1.1 surprises are fixed the YAML 1.2 way: `1e-3` is a float (1.1 reads it as a string, so `base_lr: 5e-4`
was refused), and `2024-01-01` stays a string (1.1 makes it a date, which no config field is).
"""
from __future__ import annotations

import io
import os
import re
from typing import Any

import yaml

from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.paths import require_file

MAX_BYTES = 250_000  # the bundled spaces and configs are under 2 kB; pure-Python PyYAML is slow on big files
MAX_DEPTH = 64  # nesting of lists and mappings (the config schema needs 3)
# scalars, lists and mappings, counting each alias's target again where it is used; a config has about 60, and
# counting while composing stops a file of many small values early
MAX_NODES = 10_000
MAX_NUMBER_CHARS = 100  # a longer integer literal is not a config value (and int() refuses past 4,300 digits)


class _Limit(Exception):
    """A bound was hit; the message says which (not a YAMLError: no mark, so no echo of the input)."""


class YamlInputError(UserError):
    """Unreadable YAML; `limit` says which bound refused it (None: a syntax or type error)."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class StrictLoader(yaml.SafeLoader):
    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES:,} values")
        if self._depth > MAX_DEPTH:  # PyYAML composes recursively: 3,000 nested brackets hit RecursionError
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expanded(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat keys by design
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the parent reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {excerpt(key)}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _Limit(f"an integer of {len(node.value)} characters (line {node.start_mark.line + 1})")
        return super().construct_yaml_int(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_implicit_resolver(  # YAML 1.2 floats with an exponent and no dot: 1e-3, 5E4, -2e+2
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in StrictLoader.yaml_implicit_resolvers.items()}


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expanded(root) -> None:
    """Size and depth of the document as a program would see it, aliases expanded; iterative and memoised, so a
    bomb is measured in time linear in its text, and a self-referencing alias (`&a [*a]`) is found."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()  # on the current path
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            kids = _children(node)
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            depth[nid] = 1 + max((depth[id(k)] for k in kids), default=0)
            entered.discard(nid)
            if size[nid] > MAX_NODES:
                raise _Limit(f"more than {MAX_NODES:,} values once its aliases are expanded")
            if depth[nid] > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
            continue
        if nid in size:
            continue
        if nid in entered:
            raise _Limit("an alias that refers to itself (a recursive structure)")
        entered.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node))


def parse_yaml(text: str, name: str, mark_name: str = "<input>") -> Any:
    """Parse one YAML document with the bounds above. Raises UserError starting with `name` (a file, or a --set
    key); `mark_name` is what YAML's own messages call the input (`in "bad.yaml", line 2, column 11`)."""
    if len(text) > MAX_BYTES:
        limit = f"{len(text):,} characters, more than the {MAX_BYTES:,} a YAML input may have"
        raise YamlInputError(f"{name} is refused: {limit}", limit)
    loader = None
    try:
        # a stream, not the string: marks then carry line numbers, not a copy of the text around the error
        loader = StrictLoader(_Named(text, mark_name))
        return loader.get_single_data()
    except _Limit as e:
        raise YamlInputError(f"{name} is refused: {e}", str(e)) from None
    except yaml.YAMLError as e:
        raise YamlInputError(f"{name} is not valid YAML: {_cut(str(e).replace(chr(10), ' '))}") from None
    except (ValueError, OverflowError, RecursionError) as e:  # a constructor's own error on a scalar
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise YamlInputError(f"{name} is not valid YAML: {_cut(first)}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _Named(io.StringIO):
    """PyYAML names a stream's marks after its `name` (set before the first read, which happens in __init__)."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_yaml(path: str, what: str = "config") -> Any:
    """A YAML file: it must be a regular file (a FIFO or /dev/zero would block or never end) of at most MAX_BYTES,
    in UTF-8. Messages name `what` and the path as given."""
    label = f"{what} file {excerpt(path, PATH_CHARS)}"
    require_file(path, label, "a YAML file")  # the path policy: a FIFO, a device, a directory, a link loop
    try:
        st = os.stat(path)
    except OSError as e:  # gone since
        raise UserError(f"{label} cannot be read: {e.strerror or type(e).__name__}") from None
    if st.st_size > MAX_BYTES:
        raise UserError(f"{label} has {st.st_size:,} bytes, more than the {MAX_BYTES:,} bytes a YAML input may have")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # files under /proc report size 0
    except OSError as e:
        raise UserError(f"{label} cannot be read: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_BYTES:
        raise UserError(f"{label} has more than the {MAX_BYTES:,} bytes a YAML input may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{label} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    return parse_yaml(text, label, path)
