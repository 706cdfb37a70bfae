"""Property-based tests (Hypothesis) of the config schema: every field, drawn from its type, is either accepted
into a config that passes its own rules, or refused with one short UserError line; valid configs build a model.

Strategies are generated from the dataclass fields (config_rules.leaf_fields), so a new field is drawn without
editing this file, and `test_every_field_has_a_rule` asks for its rule.
"""
from __future__ import annotations

import math
import typing

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from simmim_ray.config import Config, estimated_params
from simmim_ray.config_rules import FIELD_RULES, Choice, Items, Range, leaf_fields
from simmim_ray.io.configio import load_config
from simmim_ray.errors import UserError

FIELDS = leaf_fields(Config)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JUNK = st.one_of(st.none(), st.just({}), st.just({"a": 1}), st.just([]), st.text(max_size=5))
EDGE_INTS = st.sampled_from([0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 255, 256, 1024, 4096, 4097, 65_536, 2**31, 2**32 - 1,
                             2**32, 2**63, -2**63, 10**30, 10**400])
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 1e-12, 0.5, 1.0, 0.999999, 1.000001, -1.0, 2.0, 64.0, 1e308,
                               math.inf, -math.inf, math.nan, 10**400])


def rule_values(key: str) -> st.SearchStrategy:
    """Values at and around the field's rule (its bounds, its options), so valid configs are drawn often."""
    rule = FIELD_RULES.get(key)
    if isinstance(rule, Choice):
        return st.sampled_from(rule.options)
    if isinstance(rule, Range):
        pts = [b for b in (rule.low, rule.high) if b is not None]
        near = [v for b in pts for v in (b, b + 1, b - 1, b * 0.5, b + 1e-9, b - 1e-9)]
        return st.sampled_from(near) if near else st.nothing()
    if isinstance(rule, Items):
        return st.lists(st.integers(1, 8), min_size=rule.min_len, max_size=rule.max_len)
    return st.nothing()


def value_for(key: str, t) -> st.SearchStrategy:
    origin = typing.get_origin(t)
    if origin is list:
        (inner,) = typing.get_args(t)
        return st.one_of(st.lists(value_for(key + "[]", inner), max_size=10), rule_values(key), JUNK)
    base = {
        int: st.one_of(st.integers(-10, 300), st.integers(), EDGE_INTS, st.booleans(), st.floats(0, 10)),
        float: st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                         EDGE_FLOATS, st.booleans()),
        bool: st.one_of(st.booleans(), st.sampled_from(["true", "yes", "no", "on", "false", 1, 0, "1"])),
        str: st.one_of(st.text(max_size=20), st.sampled_from(["", "a\nb", "a\x00b", "x" * 5000, "~/d", "/tmp"])),
    }[t]
    return st.one_of(base, rule_values(key), JUNK)


@st.composite
def config_dicts(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=8))
    d: dict = {}
    for key in keys:
        node = d
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = draw(value_for(key, FIELDS[key]))
    if draw(st.booleans()):  # now and then a key the schema does not have, or a non-string key
        d[draw(st.sampled_from(["modle", 1, None, "x" * 300, "a\nb"]))] = 1
    return d


def assert_one_line(e: UserError) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and len(msg) <= 500, msg


def test_every_field_has_a_rule():
    missing = sorted(set(FIELDS) - set(FIELD_RULES))
    assert not missing, f"add a rule to simmim_ray/config_rules.py FIELD_RULES for: {missing}"
    assert not set(FIELD_RULES) - set(FIELDS), "FIELD_RULES names a field the config does not have"


@FAST
@given(config_dicts())
def test_from_dict_is_valid_or_one_line(d):
    try:
        cfg = Config.from_dict(d)
    except UserError as e:
        assert_one_line(e)
        event("refused")
        return
    event("accepted")
    cfg.validate()  # passes its own rules...
    assert Config.from_dict(cfg.to_dict()) == cfg  # ...and survives the trip to the workers
    for key, t in FIELDS.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if t is float:
            assert isinstance(value, float) and math.isfinite(value), (key, value)
        if t is bool:
            assert isinstance(value, bool), (key, value)


@FAST
@given(st.sampled_from(sorted(FIELDS)), st.data())
def test_set_override_is_valid_or_one_line(key, data):
    """The same through `--set key=value` text, as the CLI passes it (YAML-parsed, string fields raw)."""
    value = data.draw(st.one_of(st.text(max_size=30), st.sampled_from(
        ["1e309", ".inf", "-.nan", "1e-3", "0x10", "true", "yes", "[1, 2]", "{a: 1}", "&a [*a]", "'quoted'",
         "9" * 5000, "2024-01-01", "", "null", "~", "1_000", "-0"])))
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except UserError as e:
        assert_one_line(e)
        event("refused")
        return
    event("accepted")
    cfg.validate()


SMALL = {
    "model.arch": st.sampled_from(["vit", "swin", "swinv2"]),
    "model.img_size": st.sampled_from([8, 16, 32, 48, 64]),
    "model.patch_size": st.sampled_from([1, 2, 4, 8]),
    "model.embed_dim": st.sampled_from([8, 12, 16, 24, 32, 48]),
    "model.depth": st.integers(1, 3),
    "model.num_heads": st.sampled_from([1, 2, 3, 4]),
    "model.mlp_ratio": st.sampled_from([0.1, 0.5, 1.0, 2.5, 4.0]),
    "model.depths": st.lists(st.integers(1, 2), min_size=1, max_size=3),
    "model.heads": st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=3),
    "model.window_size": st.sampled_from([1, 2, 4, 8]),
    "mask.patch_size": st.sampled_from([4, 8, 16, 32]),
    "mask.ratio": st.floats(0.01, 0.99),
    "loss.fgbg_weight": st.sampled_from([0.0, 0.5]),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.fixed_dictionaries({}, optional=SMALL))
def test_valid_model_configs_build_and_run(overrides):
    """What the rules accept, the workers can build: the model and mask generator agree on shapes (on the meta
    device: no memory, no weights), and the size estimate behind the size limit is close to the real count."""
    from simmim_ray.masking import MaskGenerator
    from simmim_ray.models import build_simmim, count_params

    try:
        cfg = Config().with_overrides(overrides)
    except UserError:
        assume(False)
    m = cfg.model
    mask = MaskGenerator(m.img_size, cfg.mask.patch_size, m.patch_size, cfg.mask.ratio)()
    with torch.device("meta"):
        model = build_simmim(cfg)
        out = model(torch.empty(2, 3, m.img_size, m.img_size), mask.expand(2, -1, -1).to("meta"))
    assert tuple(out["rec"].shape) == (2, 3, m.img_size, m.img_size)
    n = count_params(model.encoder)
    assert 0.5 <= estimated_params(m) / n <= 1.5, (estimated_params(m), n)


@pytest.mark.parametrize("key,value,message", [
    ("train.checkpoint_every", 0, "`1 <= train.checkpoint_every <= 100000` must hold, but got 0"),
    ("eval.label_smoothing", 5, "`0 <= eval.label_smoothing < 1` must hold, but got 5.0"),
    ("data.loader_workers", -1, "`0 <= data.loader_workers <= 256` must hold, but got -1"),
    ("model.mlp_ratio", math.inf, "`model.mlp_ratio` must be a finite number, but got inf"),
    ("train.base_lr", 10**400, "`train.base_lr` must be a finite number, but got inf"),
    ("seed", 2 * 10**22, "`0 <= seed <= 4294967295` must hold, but got 20000000000000000000000"),
    ("seed", -1, "`0 <= seed <= 4294967295` must hold, but got -1"),
    ("train.amp", "true", "`train.amp` must be bool, but got 'true' (str)"),
    ("train.clip_grad", -1, "`train.clip_grad >= 0` must hold, but got -1.0"),
    ("eval.layer_decay", 0, "`0 < eval.layer_decay <= 1` must hold, but got 0.0"),
    ("model.embed_dim", 6_400_000, "`1 <= model.embed_dim <= 16384` must hold, but got 6400000"),
    ("data.label_column", "", "`data.label_column` must be a non-empty string"),
    ("data.path", "a\x00b", "`data.path` must not hold control characters (line breaks, NUL, ...), but got 'a\\x00b'"),
    ("train.min_lr", 1.0, "`train.min_lr <= train.base_lr` must hold, but got 1.0 > 0.04"),
    ("loss.masked_weight", 0, "`loss.masked_weight + loss.visible_weight + loss.fgbg_weight > 0` must hold"),
])
def test_named_rules(key, value, message):
    with pytest.raises(UserError) as e:
        Config().with_overrides({key: value})
    assert str(e.value).startswith(message), str(e.value)


def test_model_size_limits():
    with pytest.raises(UserError, match=r"at most 2e\+09 parameters, but this model has about 8.6e\+09"):
        Config().with_overrides({"model.embed_dim": 16384, "model.depth": 4, "model.num_heads": 16})
    with pytest.raises(UserError, match=r"tokens must hold, but got 1048576"):
        Config().with_overrides({"model.img_size": 4096, "model.patch_size": 4, "mask.patch_size": 8})


def test_non_string_keys_are_one_line():
    with pytest.raises(UserError, match=r"config keys must be strings, but got 1 \(int\) in `model`"):
        Config.from_dict({"model": {1: 2}})
    with pytest.raises(UserError, match=r"config keys must be strings like `model.depth`, but got 3"):
        Config().with_overrides({3: 1})
