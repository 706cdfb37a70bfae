"""Layer-decay ids and weight-decay exemptions against the official code's rules, on the same parameters.

The oracle below restates microsoft/SimMIM `optimizer.get_swin_layer` / `get_finetune_param_groups` and the Swin-V2
reference's `no_weight_decay_keywords` on the official parameter names; torchvision's names are translated to
those (features.0 -> patch_embed, features.2i+1.j -> layers.i.blocks.j, features.2i+2 -> layers.i.downsample).
"""
from __future__ import annotations

import re

import pytest

from simmim_ray.config import Config
from simmim_ray.engine.evaluate import Classifier
from simmim_ray.engine.optim import build_optimizer, layer_id, param_groups
from simmim_ray.models import build_encoder

DEPTHS = [2, 3, 1]  # three stages: two patch mergings, stages of unequal depth


def official_name(tv: str) -> str:
    m = re.match(r"swin\.features\.(\d+)\.(.*)", tv)
    if not m:
        return tv.removeprefix("swin.")  # mask_token, norm.*
    k, rest = int(m[1]), m[2]
    if k == 0:
        return "patch_embed." + rest
    if k % 2:
        block, tail = rest.split(".", 1)
        return f"layers.{k // 2}.blocks.{block}.{tail}"
    return f"layers.{k // 2 - 1}.downsample.{rest}"


def official_layer(name: str, depths: list[int]) -> int:
    """The official rule: mask token and patch embedding 0; block b of stage s at sum(depths[:s]) + b + 1; the
    downsample (reduction, norm) closing stage s at sum(depths[:s + 1]); anything else num_layers + 1."""
    if name == "mask_token" or name.startswith("patch_embed"):
        return 0
    if name.startswith("layers"):
        parts = name.split(".")
        stage, what = int(parts[1]), parts[3]
        if what in ("reduction", "norm"):
            return sum(depths[:stage + 1])
        return sum(depths[:stage]) + int(what) + 1
    return sum(depths) + 1


def official_no_decay(name: str, shape, v2: bool) -> bool:
    keywords = ("relative_position_bias_table",) + (("cpb_mlp", "logit_scale") if v2 else ())
    return (len(shape) == 1 or name.endswith(".bias") or name in ("mask_token", "absolute_pos_embed")
            or any(k in name for k in keywords))


def swin(arch: str):
    cfg = Config.from_dict({"model": {"arch": arch, "img_size": 32, "patch_size": 2, "embed_dim": 8,
                                      "depths": DEPTHS, "heads": [1, 2, 4], "window_size": 4}})
    return build_encoder(cfg.model)


@pytest.mark.parametrize("arch", ["swin", "swinv2"])
def test_swin_layer_ids_match_the_official_rule(arch):
    enc = swin(arch)
    rules = enc.param_rules()
    names = [n for n, _ in enc.named_parameters()]
    assert any(".reduction." in n for n in names)
    got = {n: layer_id(rules, n) for n in names}
    want = {n: official_layer(official_name(n), DEPTHS) for n in names}
    assert got == want
    # the mend: the merging after stage 0 (2 blocks) shares the id of that stage's last block, not the next one's
    assert got["swin.features.2.reduction.weight"] == got["swin.features.1.1.mlp.0.weight"] == 2
    assert got["swin.features.4.norm.weight"] == 5


@pytest.mark.parametrize("arch", ["swin", "swinv2"])
def test_swin_weight_decay_exemptions_match_the_reference(arch):
    enc = swin(arch)
    clf = Classifier(enc, num_classes=3)
    groups = param_groups(clf, 0.05, layer_decay=0.8)
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, p in clf.encoder.named_parameters():
        if not p.requires_grad:  # the mask token is frozen in the classifier
            continue
        exempt = by_id[id(p)]["weight_decay"] == 0
        assert exempt == official_no_decay(official_name(name), tuple(p.shape), arch == "swinv2"), name
    if arch == "swinv2":  # what was decayed before the mend
        params = dict(clf.named_parameters())
        for n in ("encoder.swin.features.1.0.attn.logit_scale", "encoder.swin.features.1.0.attn.cpb_mlp.0.weight",
                  "encoder.swin.features.1.0.attn.cpb_mlp.2.weight"):
            assert by_id[id(params[n])]["weight_decay"] == 0, n


def test_layer_decay_lr_follows_the_ids_and_the_classifier_sits_on_top():
    enc = swin("swin")
    clf = Classifier(enc, num_classes=3)
    opt = build_optimizer(param_groups(clf, 0.05, layer_decay=0.5), lr=1.0, flat=False)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    p = dict(clf.named_parameters())
    top = sum(DEPTHS) + 1
    assert lr_of[id(p["encoder.swin.features.2.reduction.weight"])] == pytest.approx(0.5 ** (top - 2))
    assert lr_of[id(p["encoder.swin.features.0.0.weight"])] == pytest.approx(0.5 ** top)
    assert lr_of[id(p["head.weight"])] == lr_of[id(p["encoder.swin.norm.weight"])] == pytest.approx(1.0)


def test_vit_layer_ids_match_the_official_rule():
    enc = build_encoder(Config.from_dict({"model": {"img_size": 16, "depth": 3}}).model)
    rules = enc.param_rules()
    ids = {n: layer_id(rules, n) for n, _ in enc.named_parameters()}
    for n, v in ids.items():
        m = re.match(r"vit\.encoder\.layers\.encoder_layer_(\d+)\.", n)
        if m:
            assert v == int(m[1]) + 1, n
        elif n.startswith(("vit.conv_proj", "vit.class_token", "vit.encoder.pos_embedding", "mask_token")):
            assert v == 0, n
        else:
            assert v == 4 and n.startswith("vit.encoder.ln."), n
