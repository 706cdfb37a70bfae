"""YAML <-> Config (kept out of the pure core): safe_load only, `--set key=value` overrides."""
from __future__ import annotations

import os
from typing import Any

import yaml

from simmim_ray.config import Config, set_dotted
from simmim_ray.errors import UserError


def read_yaml(path: str, what: str = "config") -> Any:
    if not os.path.isfile(path):
        raise UserError(f"{what} file {path!r} does not exist")
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        first = str(e).replace("\n", " ")
        raise UserError(f"{what} file {path!r} is not valid YAML: {first}") from None


def parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {key}: cannot parse value {raw!r}") from None
    return out


def load_config(path: str | None, overrides: list[str] | None = None) -> Config:
    d = read_yaml(path) if path else {}
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise UserError(f"config file {path!r} must hold a mapping of config sections")
    d = Config.from_dict(d).to_dict()  # unknown keys in the file are reported against the file
    for key, value in parse_set(overrides or []).items():
        set_dotted(d, key, value)
    return Config.from_dict(d)


def dump_config(cfg: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
