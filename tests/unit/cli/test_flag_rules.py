"""simmim_ray/cli/flag_rules.py: the architecture table matches what the models read; the rules that need a space."""
from __future__ import annotations

import pytest

from simmim_ray.cli import flag_rules
from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.space import parse_space

SWIN = {"model.arch": "swin", "model.img_size": 16, "model.patch_size": 2, "model.window_size": 4}


class Spy:
    """A ModelConfig that records which of its fields the encoder's builder reads."""

    def __init__(self, m) -> None:
        self.__dict__.update(m=m, read=set())

    def __getattr__(self, name):
        self.read.add(f"model.{name}")
        return getattr(self.m, name)


@pytest.mark.parametrize("arch, overrides", [("vit", {}), ("swin", SWIN), ("swinv2", {**SWIN, "model.arch": "swinv2"})])
def test_arch_keys_are_what_each_architecture_reads(arch, overrides):
    """The table says which architectures read each key: the builder reads exactly those keys of the table."""
    from simmim_ray.models.factory import build_encoder

    spy = Spy(Config().with_overrides(overrides).model)
    build_encoder(spy)
    assert {k for k in flag_rules.ARCH_KEYS if k in spy.read} == {
        k for k, archs in flag_rules.ARCH_KEYS.items() if arch in archs}


def space(params: str):
    import yaml

    return parse_space(yaml.safe_load(params), "s")


def test_a_key_of_a_searched_architecture_is_allowed():
    s = space("params:\n  model.arch: {choice: [vit, swin]}\n  model.window_size: {choice: [2, 4]}\n")
    flag_rules.arch_keys(s, Config())


def test_a_key_no_architecture_of_the_search_reads_is_refused():
    s = space("params:\n  model.arch: {choice: [swin, swinv2]}\n  model.num_heads: {choice: [2, 4]}\n")
    with pytest.raises(UserError, match=r"^params.model.num_heads: only model.arch=vit reads it, but every trial of "
                                        r"this space is model.arch=swin or swinv2"):
        flag_rules.arch_keys(s, Config())
