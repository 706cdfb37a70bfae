"""The checks on what a command reads and writes, on the driver before Ray starts: the config, the space file,
--points, the data, `train`'s --output; and the validation passes of `train` and `check`, built from them (the
search's is search_checks.py). Each `simmim-ray <command>` calls its `validate_*` first and starts Ray only with what
it returns, so nothing reaches a worker that the driver could have refused (docs/bad_input.md lists what is refused).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from simmim_ray import paths
from simmim_ray.cli import flag_rules
from simmim_ray.config import Config, coerce, field_type
from simmim_ray.data import check
from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.io.configio import load_config, parse_set, read_yaml
from simmim_ray.search.space import decode, load_space
from simmim_ray.train.resources import check_fits, local_resources, starts_locally
from simmim_ray.train.ray_init import check_address


@dataclass
class TrainPlan:
    cfg: Config  # data.path absolute
    out: str  # absolute
    summary: dict  # data summary for the log


def validate_train(args) -> TrainPlan:
    flag_rules.check(flag_rules.Flags("train", args), flag_rules.EARLY)
    # files are read here, in the user's directory, and named in messages as given; only what leaves this
    # process (the config the workers get, settings.json) needs absolute paths
    cfg = paths.resolve_config_paths(load_config(args.config, args.set))
    out = paths.check_writable_dir(args.output, "--output")
    paths.check_apart_from_data(out, f"--output {excerpt(out, PATH_CHARS)}", cfg)
    check_train_output(out, cfg)
    if starts_locally(args.address):
        check_fits(args.workers, args.cpus_per_worker, 1.0, args.gpu, local_resources(), "--workers",
                   "this machine (Ray starts locally; join a cluster with --address for more)")
    summary = check_data(cfg)
    check_address(args.address)
    return TrainPlan(cfg, out, summary)


def check_data(cfg: Config) -> dict:
    """The data checks (data/check.py): paths, schema, labels, before any worker reads the data; on the config the
    workers get (paths absolute, `~` expanded), so what is checked is what they will read."""
    return check.check_data(cfg)


def check_train_output(out: str, cfg: Config) -> None:
    """`train` on an existing --output resumes that run (Ray Train restores it by name), which is only right with
    the same config: a changed one is refused before anything is written. A non-empty directory that is no
    `train` output is refused too (config.yaml, metrics.json and tb/ would land among the user's files)."""
    shown = f"--output {excerpt(out, PATH_CHARS)}"
    if not os.path.isdir(out) or not os.listdir(out):
        return
    saved = os.path.join(out, "config.yaml")
    if not os.path.isfile(saved):
        raise UserError(f"{shown} is not empty and holds no `simmim-ray train` run (no config.yaml); give a new or "
                        f"empty directory")
    try:
        old = Config.from_dict(read_yaml(saved, "--output config"))
    except UserError as e:
        raise UserError(f"{shown} holds a config.yaml that is no valid config ({e}); give another --output"
                        ) from None
    changed = _changed_keys(old.to_dict(), cfg.to_dict())
    if changed:
        shown_changes = ", ".join(f"{k}: {excerpt(a, 30)} -> {excerpt(b, 30)}" for k, a, b in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise UserError(f"{shown} holds a run with another config ({shown_changes}{more}); the same config "
                        f"resumes it, a changed one needs another --output")


def _changed_keys(a: dict, b: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    out = []
    for k in a:
        if isinstance(a[k], dict) and isinstance(b.get(k), dict):
            out += _changed_keys(a[k], b[k], f"{prefix}{k}.")
        elif a[k] != b.get(k):
            out.append((f"{prefix}{k}", a[k], b.get(k)))
    return out


def validate_check(args):
    """-> (base config, space): what `check` prints."""
    flag_rules.check(flag_rules.Flags("check", args), flag_rules.EARLY)
    base = load_config(args.config, args.set)
    space = load_space(space_file(args.space), base)
    flag_rules.arch_keys(space, space.base_config(load_config(args.config)).with_overrides(parse_set(args.set)))
    return base, space


def check_points(path: str, points: list[dict], space, base: Config) -> None:
    """Each --points entry must be a value its distribution can propose (Optuna would run it anyway) and make a
    valid config: else its trial fails after Ray started."""
    where = f"--points {excerpt(path, PATH_CHARS)}: point"
    params = {p.key: p for p in space.params}
    for i, point in enumerate(points):
        values = decode(point)
        for key, value in values.items():
            try:
                values[key] = value = coerce(key, field_type(key), value)
            except UserError as e:
                raise UserError(f"{where} {i}: {e}") from None
            if not params[key].contains(value):
                raise UserError(f"{where} {i}: {key}={excerpt(value)} is outside the space's "
                                f"{params[key].describe()}")
        try:
            base.with_overrides(values)
        except UserError as e:
            raise UserError(f"{where} {i} makes an invalid config: {e}") from None


def space_file(space: str) -> str:
    """A path as given, else a bundled space by name: ./search_spaces/ first, then the source checkout's."""
    if os.path.isfile(space):
        return space
    roots = ("search_spaces", os.path.join(os.path.dirname(__file__), "..", "..", "search_spaces"))
    for root in roots:
        for cand in (os.path.join(root, space), os.path.join(root, space + ".yaml")):
            if os.path.isfile(cand):
                return cand
    return space
