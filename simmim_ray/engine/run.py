"""One SimMIM run on one rank: data, model, optimiser, per-epoch pre-training, proxy and final evaluation.

Pure PyTorch. The Ray worker (simmim_ray/train/trial_loop.py) drives it; tests drive it directly with world_size=1.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from simmim_ray.config import Config
from simmim_ray.data import EvalTransform, PretrainTransform, build_splits, collate_skip
from simmim_ray.data.check import fgbg_rule
from simmim_ray.data.scan import scan
from simmim_ray.data.stream_batches import StreamedSplits, local_splits
from simmim_ray.data.transforms import Transformed
from simmim_ray.engine import evaluate
from simmim_ray.engine.optim import build_optimizer, param_groups, scaled_lr, warmup_cosine
from simmim_ray.engine.pretrain import train_one_epoch
from simmim_ray.masking import upsample_mask
from simmim_ray.metrics import FLOPS, PARAMS, PROXY_KNN
from simmim_ray.models import build_simmim, count_params, encoder_flops


def _identity(m: nn.Module) -> nn.Module:
    return m


def shard(ds, rank: int, world: int):
    """Disjoint, unpadded shard for evaluation (DistributedSampler pads, which would double-count)."""
    return Subset(ds, list(range(rank, len(ds), world)))


# the image grid's colours (image_grid): hidden patches in the masked input, and the tint on predicted patches in
# the reconstruction; neither is black or white, the colours of digits and their backgrounds
HIDDEN_FILL = (0.35, 0.5, 0.8)
PREDICTED_TINT = (1.0, 0.2, 0.2)
TINT_WEIGHT = 0.35
GRID_LEGEND = "rows: original | masked input (blue: hidden patches) | reconstruction (red tint: predicted patches)"


class PretrainRun:
    def __init__(self, cfg: Config, rank: int = 0, world_size: int = 1, device: torch.device | None = None,
                 wrap: Callable[[nn.Module], nn.Module] = _identity, splits=None, pretrain_loader=None) -> None:
        """`splits`: in-memory `Splits`, or `StreamedSplits` (loaders of collated batches for every split, e.g. Ray
        Data streams given by the train layer); default: this process loads `cfg`'s data itself.
        `pretrain_loader`: an iterable of `collate_skip` batches that replaces the pre-training loader; it must have
        `__len__` (steps per epoch, for the lr schedule)."""
        self.cfg, self.rank, self.world = cfg, rank, world_size
        self.device = device or torch.device("cpu")
        self.wrap = wrap
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        if splits is None:
            splits = _load_splits(cfg, rank, world_size, self.device)
        self.splits = s = splits
        self.streamed = isinstance(s, StreamedSplits)
        bs = cfg.train.batch_size
        self._grid: dict | None = None  # streamed: the first pre-training batch, shown by image_grid
        if self.streamed:
            self.pretrain_ds, self.sampler, self.loader = None, None, s.pretrain
        else:
            self.pretrain_ds = Transformed(s.pretrain, PretrainTransform(cfg, s.mean, s.std))
            self.sampler = DistributedSampler(self.pretrain_ds, world_size, rank, shuffle=True, seed=cfg.seed,
                                              drop_last=True) if world_size > 1 else None
            self.loader = DataLoader(self.pretrain_ds, batch_size=bs, shuffle=self.sampler is None,
                                     sampler=self.sampler, drop_last=len(self.pretrain_ds) >= bs * world_size,
                                     collate_fn=collate_skip, num_workers=cfg.data.loader_workers)
        if pretrain_loader is not None:
            self.loader, self.sampler = pretrain_loader, None
        self.model = build_simmim(cfg).to(self.device)
        self.lr = scaled_lr(cfg.train.base_lr, bs * world_size)
        # before wrap: the optimiser moves the parameters' storage into its flat buffers
        self.optimizer = build_optimizer(param_groups(self.model, cfg.train.weight_decay), self.lr, cfg.train.betas)
        self.ddp_model = wrap(self.model)
        steps = max(1, len(self.loader))
        self.scheduler = warmup_cosine(self.optimizer, self.lr, cfg.train.min_lr, cfg.train.warmup_epochs * steps,
                                       cfg.train.epochs * steps)
        self.epoch = 0  # epochs completed
        self.train_seconds = 0.0

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                "train_seconds": self.train_seconds, "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["rng"])

    # ---- loops -----------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """Pre-trains one epoch. Each epoch reseeds from (seed, epoch, rank), so a resumed run is exact."""
        torch.manual_seed(self.cfg.seed * 100_003 + self.epoch * 1009 + self.rank)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        t = self.cfg.train
        start = time.perf_counter()
        loader = self._keep_first(self.loader) if self.streamed and self._grid is None else self.loader
        m = train_one_epoch(self.ddp_model, loader, self.optimizer, self.scheduler, self.cfg.loss,
                            self.cfg.model.patch_size, self.device, t.clip_grad, t.amp)
        self.train_seconds += time.perf_counter() - start
        self.epoch += 1
        m["epoch"] = self.epoch
        return m

    def _keep_first(self, loader):
        for batch in loader:
            if self._grid is None and "img" in batch:
                self._grid = {k: batch[k][:8] for k in ("img", "mask")}
            yield batch

    def _labeled(self, train_aug: bool):
        s = self.splits
        return Transformed(s.labeled, EvalTransform(self.cfg, s.mean, s.std, train=train_aug))

    def _bank(self):
        """The k-NN bank: every labelled image (in memory), or this rank's share of them (streamed; gathered)."""
        if self.streamed:
            return self.splits.bank
        return DataLoader(self._labeled(train_aug=False), batch_size=self.cfg.eval.batch_size,
                          collate_fn=collate_skip)

    def _eval_loader(self, split: str):
        """This rank's disjoint shard of `split` ("val" or "test"), un-augmented."""
        s = self.splits
        if self.streamed:
            return getattr(s, split)
        ds = Transformed(shard(getattr(s, split), self.rank, self.world), EvalTransform(self.cfg, s.mean, s.std,
                                                                                        train=False))
        return DataLoader(ds, batch_size=self.cfg.eval.batch_size, collate_fn=collate_skip)

    def proxy(self) -> dict[str, float]:
        """Cheap per-epoch metric for early stopping (k-NN: labelled bank, validation queries), or nothing."""
        if self.cfg.eval.proxy == "none":
            return {}
        r = evaluate.knn_accuracy(self.model.encoder, self._bank(), {"val": self._eval_loader("val")},
                                  self.splits.num_classes, self.cfg.eval.knn_k, self.device,
                                  gather_bank=self.streamed)
        return {PROXY_KNN: r["val_accuracy"]}

    def final_eval(self, protocol: str | None = None, epochs: int | None = None,
                   splits: tuple[str, ...] = ("val",), seed: int | None = None,
                   encoder: nn.Module | None = None) -> dict[str, float]:
        """Fine-tunes (or probes) on the labelled split once and measures `<split>_accuracy` and `<split>_count` on
        each of `splits`, plus params / FLOPs of the encoder (what a user deploys). `seed` seeds the fine-tune
        (head init, batch order, augmentation); `encoder` replaces the pre-trained one (e.g. a fresh one for the
        from-scratch baseline)."""
        cfg = self.cfg
        protocol = protocol or cfg.eval.protocol
        seed = cfg.seed * 7 + 1 if seed is None else seed
        torch.manual_seed(seed)
        encoder = self.model.encoder if encoder is None else encoder
        loaders = {name: self._eval_loader(name) for name in splits}
        if protocol == "knn":
            out = evaluate.knn_accuracy(encoder, self._bank(), loaders, self.splits.num_classes, cfg.eval.knn_k,
                                        self.device, gather_bank=self.streamed)
        elif self.streamed:
            out = evaluate.train_classifier(encoder, self.splits.labeled(protocol == "finetune"), loaders,
                                            self.splits.num_classes, cfg.eval, self.device, self.world, self.wrap,
                                            linear=protocol == "linear", amp=cfg.train.amp, epochs=epochs)
        else:
            lab = self._labeled(train_aug=protocol == "finetune")
            sampler = DistributedSampler(lab, self.world, self.rank, seed=seed) if self.world > 1 else None
            train_loader = DataLoader(lab, batch_size=cfg.eval.batch_size, shuffle=sampler is None,
                                      sampler=sampler, collate_fn=collate_skip)
            out = evaluate.train_classifier(encoder, train_loader, loaders, self.splits.num_classes,
                                            cfg.eval, self.device, self.world, self.wrap,
                                            linear=protocol == "linear", amp=cfg.train.amp, epochs=epochs)
        return {**out, **self.size()}

    def size(self) -> dict[str, float]:
        enc = self.model.encoder
        return {PARAMS: count_params(enc), FLOPS: encoder_flops(enc, self.cfg.model.img_size)}

    @torch.no_grad()
    def image_grid(self, n: int = 8) -> torch.Tensor:
        """[3, 3*H, n*W] in [0, 1]: rows are original | masked input | reconstruction (visible pixels pasted).

        What was masked must be visible whatever the images look like (black digits' backgrounds are black): the
        masked input fills hidden patches with HIDDEN_FILL, and the reconstruction tints the patches it predicted
        with PREDICTED_TINT (GRID_LEGEND says so where the grid is shown)."""
        if self.streamed:
            if self._grid is None:
                return torch.zeros(3, 3 * self.cfg.model.img_size, self.cfg.model.img_size)
            batch = {k: v[:n] for k, v in self._grid.items()}
        else:
            batch = collate_skip([self.pretrain_ds[i] for i in range(min(n, len(self.pretrain_ds)))])
        imgs, mask = batch["img"].to(self.device), batch["mask"].to(self.device)
        self.model.eval()
        rec = self.model(imgs, mask)["rec"].float()
        self.model.train()
        m = upsample_mask(mask, self.cfg.model.patch_size).float()
        mean = torch.tensor(self.splits.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.splits.std, device=self.device).view(1, 3, 1, 1)
        def show(x: torch.Tensor) -> torch.Tensor:
            return (x * std + mean).clamp(0, 1)

        fill = torch.tensor(HIDDEN_FILL, device=self.device).view(1, 3, 1, 1)
        tint = torch.tensor(PREDICTED_TINT, device=self.device).view(1, 3, 1, 1)
        predicted = (1 - TINT_WEIGHT) * show(rec) + TINT_WEIGHT * tint
        rows = [show(imgs), show(imgs) * (1 - m) + fill * m, show(imgs) * (1 - m) + predicted * m]
        return torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1).cpu()


def _load_splits(cfg: Config, rank: int, world: int, device: torch.device):
    """In-memory sources load whole; Parquet and image folders stream from this process (no Ray)."""
    if cfg.data.source in ("parquet", "imagefolder"):
        plan = scan(cfg)
        fgbg_rule(cfg, plan.has_masks)
        return local_splits(cfg, plan, rank, world, device)
    return build_splits(cfg)
