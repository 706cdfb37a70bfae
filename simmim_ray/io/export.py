"""The winning model: `best/encoder.pt` + `config.yaml` + `metrics.json`, and one call to load it back."""
from __future__ import annotations

import io
import json

import torch
import yaml

from simmim_ray.io import storage
from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.io.yamlio import parse_yaml

CHECKPOINT_FILE = "state.pt"  # in every Train checkpoint directory (written by train/trial_loop.py)


def latest_checkpoint(run_dir: str, hint: str = "") -> str | None:
    """Checkpoint `hint` (a path recorded when it was written), found in `run_dir` (the Train run's directory
    where the experiment is now: it may have been moved or copied since), else the newest one in `run_dir`."""
    name = hint.rstrip("/").rsplit("/", 1)[-1].split("?")[0] if hint else ""
    if name and storage.exists(storage.join(run_dir, name, CHECKPOINT_FILE)):
        return storage.join(run_dir, name)
    # names sort by time (checkpoint_<timestamp>); Train also keeps checkpoint_manager_snapshot.json there
    ckpts = [n for n in storage.listdir(run_dir) if n.startswith("checkpoint_") and not n.endswith(".json")]
    for name in reversed(ckpts):
        if storage.exists(storage.join(run_dir, name, CHECKPOINT_FILE)):
            return storage.join(run_dir, name)
    return None


def export_best(ckpt: str, dest: str, row: dict) -> str:
    """Copies the encoder weights and resolved config of checkpoint `ckpt`, and `row`'s metrics, into `dest`."""
    state = torch.load(io.BytesIO(storage.read_bytes(storage.join(ckpt, CHECKPOINT_FILE))), map_location="cpu",
                       weights_only=True)
    # clone: the checkpoint's tensors are views of the optimiser's flat buffers, and saving a view saves its
    # whole storage (the decoder's weights too)
    encoder = {k.removeprefix("encoder."): v.clone() for k, v in state["model"].items() if k.startswith("encoder.")}
    buf = io.BytesIO()
    torch.save(encoder, buf)
    storage.write_bytes(storage.join(dest, "encoder.pt"), buf.getvalue())
    storage.write_text(storage.join(dest, "config.yaml"), yaml.safe_dump(state["config"], sort_keys=False))
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool, list)) or v is None}
    storage.write_text(storage.join(dest, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True))
    return dest


def load_encoder(path: str) -> torch.nn.Module:
    """Load an exported backbone: `load_encoder("experiments/digits_quick/best")` -> ViT/Swin encoder module.

    The module has `forward_features(x)`, `forward(x) -> [B, C, h, w]` and `pooled(x) -> [B, C]` for
    fine-tuning elsewhere. Weights load with weights_only=True and strict key matching. A config.yaml and an
    encoder.pt of different models (or a file that is neither) are a UserError naming both files and the first
    tensor that does not fit, instead of torch's list of every size mismatch.
    """
    from simmim_ray.models import build_encoder  # the models (torchvision) only here: `report` imports this module

    config_file, weights_file = storage.join(path, "config.yaml"), storage.join(path, "encoder.pt")
    try:
        text = storage.read_bytes(config_file).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{config_file}: cannot be read as the exported config ({_reason(e)})") from None
    data = parse_yaml(text, config_file, config_file)  # its messages name the file
    try:
        cfg = Config.from_dict(data)
    except UserError as e:
        raise UserError(f"{config_file}: {e}") from None
    enc = build_encoder(cfg.model)
    try:
        state = torch.load(io.BytesIO(storage.read_bytes(weights_file)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - OSError, pickle's and torch's many errors for a file of no weights
        raise UserError(f"{weights_file}: cannot be loaded as encoder weights ({_reason(e)})") from None
    misfit = _misfit(state, enc.state_dict())
    if misfit:
        raise UserError(f"{config_file} describes {_model(cfg)}, but {weights_file} {misfit}; the two files must come "
                        f"from one export (simmim_ray.io.export.export_best)")
    enc.load_state_dict(state)
    return enc.eval()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _model(cfg: Config) -> str:
    m = cfg.model
    shape = ("depth", "num_heads") if m.arch == "vit" else ("depths", "heads", "window_size")
    return ", ".join(f"model.{k}={getattr(m, k)}" for k in ("arch", "img_size", "patch_size", "embed_dim", *shape,
                                                            "mlp_ratio"))


def _misfit(saved, wanted: dict) -> str | None:
    """How `saved` (encoder.pt's contents) fails the state dict the config's model needs; None when it fits."""
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        return f"holds no weights by name (a {type(saved).__name__}, not a dict of tensors)"
    for name, t in wanted.items():
        if name not in saved:
            return f"has no `{name}` (the config's model needs one of shape {list(t.shape)})"
        if saved[name].shape != t.shape:
            return f"holds `{name}` of shape {list(saved[name].shape)}, where the config's model has {list(t.shape)}"
    extra = next((k for k in saved if k not in wanted), None)
    return f"holds `{extra}`, which the config's model has no place for" if extra is not None else None
