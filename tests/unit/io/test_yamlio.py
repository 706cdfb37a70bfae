"""Strict, bounded YAML (simmim_ray/io/yamlio.py) and `--set` values."""
from __future__ import annotations

import pytest

from simmim_ray.io.configio import load_config, parse_set
from simmim_ray.errors import UserError
from simmim_ray.search.space import parse_space
from simmim_ray.io.yamlio import parse_yaml


def test_yaml_1_2_numbers_and_no_dates():
    assert parse_yaml("[1e-3, 5E4, -2e+2, .5e1, 1.0e-3, 1_000, 0.5, 2024-01-01, 1e309]", "t") == [
        0.001, 50000.0, -200.0, 5.0, 0.001, 1000, 0.5, "2024-01-01", float("inf")]
    # the docstring example of search/space.py, which YAML 1.1 read as strings
    space = parse_space(parse_yaml("params:\n  train.base_lr: {loguniform: [5e-4, 5e-3]}\n", "t"), "t")
    assert (space.params[0].low, space.params[0].high) == (5e-4, 5e-3)


def test_merge_keys_still_work_and_duplicates_do_not():
    assert parse_yaml("b: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n", "t")["d"] == {"x": 3, "y": 2}
    with pytest.raises(UserError, match=r"^t is not valid YAML: duplicate key 'x'   in \"f.yaml\", line 3"):
        parse_yaml("d:\n  x: 1\n  x: 2\n", "t", "f.yaml")
    with pytest.raises(UserError, match="duplicate key 1"):  # equal keys of another type
        parse_yaml("{1: a, 1: b}", "t")


def test_set_values(monkeypatch):
    assert parse_set(["data.path=2024", "data.label_column='my label'", "train.base_lr=1e-3",
                      "data.image_column=yes"]) == {
        "data.path": "2024", "data.label_column": "my label", "train.base_lr": 1e-3, "data.image_column": "yes"}
    assert load_config(None, ["train.base_lr=5e-4", "data.path=2024-01-01"]).data.path == "2024-01-01"
    with pytest.raises(UserError, match=r"^--set train.epochs: cannot parse value '\[1'$"):
        parse_set(["train.epochs=[1"])
    bomb = "[" * 100 + "]" * 100
    with pytest.raises(UserError, match=r"cannot parse value '\[+\.\.\. \(nested deeper than 64 levels\)$"):
        parse_set([f"model.depths={bomb}"])
    with pytest.raises(UserError, match=r"^--set 'x\\\\n': expected key=value$"):
        parse_set(["x\\n"])
