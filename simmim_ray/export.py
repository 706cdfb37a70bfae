"""The winning model: `best/encoder.pt` + `config.yaml` + `metrics.json`, and one call to load it back."""
from __future__ import annotations

import io
import json

import torch

from simmim_ray import storage as sio
from simmim_ray.config import Config

CHECKPOINT_FILE = "state.pt"  # in every Train checkpoint directory (written by train/worker.py)


def latest_checkpoint(run_dir: str, hint: str = "") -> str | None:
    """Checkpoint `hint` (a path recorded when it was written), found in `run_dir` (the Train run's directory
    where the experiment is now: it may have been moved or copied since), else the newest one in `run_dir`."""
    name = hint.rstrip("/").rsplit("/", 1)[-1].split("?")[0] if hint else ""
    if name and sio.exists(sio.join(run_dir, name, CHECKPOINT_FILE)):
        return sio.join(run_dir, name)
    # names sort by time (checkpoint_<timestamp>); Train also keeps checkpoint_manager_snapshot.json there
    ckpts = [n for n in sio.listdir(run_dir) if n.startswith("checkpoint_") and not n.endswith(".json")]
    for name in reversed(ckpts):
        if sio.exists(sio.join(run_dir, name, CHECKPOINT_FILE)):
            return sio.join(run_dir, name)
    return None


def export_best(ckpt: str, dest: str, row: dict) -> str:
    """Copies the encoder weights and resolved config of checkpoint `ckpt`, and `row`'s metrics, into `dest`."""
    import yaml

    state = torch.load(io.BytesIO(sio.read_bytes(sio.join(ckpt, CHECKPOINT_FILE))), map_location="cpu",
                       weights_only=True)
    # clone: the checkpoint's tensors are views of the optimiser's flat buffers, and saving a view saves its
    # whole storage (the decoder's weights too)
    encoder = {k.removeprefix("encoder."): v.clone() for k, v in state["model"].items() if k.startswith("encoder.")}
    buf = io.BytesIO()
    torch.save(encoder, buf)
    sio.write_bytes(sio.join(dest, "encoder.pt"), buf.getvalue())
    sio.write_text(sio.join(dest, "config.yaml"), yaml.safe_dump(state["config"], sort_keys=False))
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool, list)) or v is None}
    sio.write_text(sio.join(dest, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True))
    return dest


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


