"""How an encoder's parameters are grouped for the optimiser, stated by name patterns (as timm's `group_matcher`).

Each encoder (models/vit.py, models/swin.py) owns its rules in one place; engine/optim.py applies them. Pure data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Union

# a layer id, or a function of the pattern's match (e.g. a block index captured by the pattern)
LayerOf = Union[int, Callable[[re.Match], int]]


@dataclass(frozen=True)
class ParamRules:
    """`no_decay`: patterns (re.search on the parameter name inside the encoder) exempt from weight decay, on top of
    the generic rule that every 1-D parameter and bias is exempt (the official code's `no_weight_decay` names and
    `no_weight_decay_keywords`).
    `layers`: (pattern, layer id) pairs tried in order (re.match); the first that matches gives the parameter's depth
    for layer-wise lr decay: 0 for the embeddings, 1..num_layers for the blocks. A parameter no pattern matches (the
    final norm) sits at num_layers + 1, with whatever is stacked on the encoder."""

    num_layers: int
    no_decay: tuple[str, ...] = ()
    layers: tuple[tuple[str, LayerOf], ...] = ()
