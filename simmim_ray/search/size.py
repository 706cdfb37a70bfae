"""The size of a configuration, known before it trains: what lets the search skip a configuration that cannot beat
the smallest feasible one it already has (search/searcher.py)."""
from __future__ import annotations

import json

import torch

from simmim_ray.config import Config
from simmim_ray.search.space import decode


@torch.no_grad()
def encoder_size(cfg: Config, metric: str) -> int:
    """Parameters or forward FLOPs of cfg's encoder, built on the meta device (no memory, no init cost)."""
    # the models (torchvision) load when a size is first computed: the driver imports this module, and the
    # search command's checks import the driver before Ray starts
    from simmim_ray.models.factory import build_encoder, count_params, encoder_flops

    with torch.device("meta"):
        enc = build_encoder(cfg.model)
    return count_params(enc) if metric == "params" else encoder_flops(enc, cfg.model.img_size)


class SizeOf:
    """`size_of(params)`: the size metric of the base config under a trial's searched params (as the searcher
    suggests them, encoded). Plain data, so Tune can pickle the searcher that holds it; sizes are cached."""

    def __init__(self, base: dict, metric: str) -> None:
        self.base, self.metric = base, metric
        self._cache: dict[str, int] = {}

    def __call__(self, params: dict) -> int:
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = encoder_size(Config.from_dict(self.base).with_overrides(decode(params)), self.metric)
        return self._cache[key]
