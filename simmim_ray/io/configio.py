"""YAML <-> Config (kept out of the pure core): bounded, strict YAML (io/yamlio.py), `--set key=value` overrides."""
from __future__ import annotations

from typing import Any

import yaml

from simmim_ray.config import Config, field_type, set_dotted
from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.io.yamlio import YamlInputError, parse_yaml, read_yaml

__all__ = ["read_yaml", "parse_set", "load_config", "dump_config"]


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` -> {key: value}; the value is YAML (`3`, `0.5`, `true`, `[2, 2]`), except for a string
    field, which takes the text as written: `data.path=2024` is the folder "2024", not the number."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {excerpt(item)}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if _is_str_field(key):
            out[key] = _unquote(raw)
            continue
        try:
            out[key] = parse_yaml(raw, "--set")
        except YamlInputError as e:
            why = f" ({e.limit})" if e.limit else ""
            raise UserError(f"--set {excerpt(key)[1:-1]}: cannot parse value {excerpt(raw)}{why}") from None
    return out


def _is_str_field(key: str) -> bool:
    try:
        return field_type(key) is str
    except UserError:  # an unknown key is reported when it is applied, with the usual message
        return False


def _unquote(raw: str) -> str:
    """`'my dir'` and `"my dir"` (quoted for YAML, as the docs show for other values) mean my dir."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def load_config(path: str | None, overrides: list[str] | None = None) -> Config:
    d = read_yaml(path) if path else {}
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise UserError(f"config file {excerpt(path, PATH_CHARS)} must hold a mapping of config sections")
    d = Config.from_dict(d).to_dict()  # unknown keys in the file are reported against the file
    for key, value in parse_set(overrides or []).items():
        set_dotted(d, key, value)
    return Config.from_dict(d)


def dump_config(cfg: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
