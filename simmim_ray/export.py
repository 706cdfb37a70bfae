"""The winning model: `best/encoder.pt` + `config.yaml` + `metrics.json`, and one call to load it back."""
from __future__ import annotations

import io
import json


import torch

from simmim_ray import storage as sio
from simmim_ray.config import Config

CKPT_FILE = "state.pt"


def latest_checkpoint(exp: str, trial_id: str, hint: str = "") -> str | None:
    if hint and sio.exists(sio.join(hint, CKPT_FILE)):
        return hint
    run = sio.join(exp, "train_runs", trial_id)
    # names sort by time (checkpoint_<timestamp>); Train also keeps checkpoint_manager_snapshot.json there
    ckpts = [n for n in sio.listdir(run) if n.startswith("checkpoint_") and not n.endswith(".json")]
    for name in reversed(ckpts):
        if sio.exists(sio.join(run, name, CKPT_FILE)):
            return sio.join(run, name)
    return None


def export_best(exp: str, row: dict) -> str:
    """Copies the winner's encoder weights, resolved config and metrics into <exp>/best/."""
    import yaml

    ckpt = latest_checkpoint(exp, row["trial_id"], row.get("checkpoint_path") or "")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint for {row['trial_id']} under {sio.join(exp, 'train_runs')}")
    state = torch.load(io.BytesIO(sio.read_bytes(sio.join(ckpt, CKPT_FILE))), map_location="cpu", weights_only=True)
    # clone: the checkpoint's tensors are views of the optimiser's flat buffers, and saving a view saves its
    # whole storage (the decoder's weights too)
    encoder = {k.removeprefix("encoder."): v.clone() for k, v in state["model"].items() if k.startswith("encoder.")}
    buf = io.BytesIO()
    torch.save(encoder, buf)
    best = sio.join(exp, "best")
    sio.write_bytes(sio.join(best, "encoder.pt"), buf.getvalue())
    sio.write_text(sio.join(best, "config.yaml"), yaml.safe_dump(state["config"], sort_keys=False))
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None}
    sio.write_text(sio.join(best, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True))
    return best


def load_encoder(path: str) -> torch.nn.Module:
    """Load an exported backbone: `load_encoder("experiments/digits_quick/best")` -> ViT/Swin encoder module.

    The module has `forward_features(x)`, `forward(x) -> [B, C, h, w]` and `pooled(x) -> [B, C]` for
    fine-tuning elsewhere. Weights load with weights_only=True and strict key matching.
    """
    import yaml

    from simmim_ray.models import build_encoder

    cfg = Config.from_dict(yaml.safe_load(sio.read_bytes(sio.join(path, "config.yaml"))))
    enc = build_encoder(cfg.model)
    state = torch.load(io.BytesIO(sio.read_bytes(sio.join(path, "encoder.pt"))), map_location="cpu", weights_only=True)
    enc.load_state_dict(state)
    return enc.eval()


