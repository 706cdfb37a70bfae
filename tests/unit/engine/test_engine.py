import copy
import dataclasses
import math

import pytest
import torch

from data_factory import make_image_folder
from simmim_ray.config import Config
from simmim_ray.data import build_splits, collate_skip
from simmim_ray.engine.optim import build_optimizer, layer_id, param_groups, scaled_lr, warmup_cosine
from simmim_ray.engine.pretrain import NonFiniteLoss
from simmim_ray.engine.run import PretrainRun
from simmim_ray.models import build_simmim


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: two intra-op threads spin-wait and run ~10x slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_splits():
    return build_splits(Config.from_dict({}))


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretraining_loss_falls(tiny_cfg, digits_splits):
    cfg = tiny_cfg.with_overrides({"train.epochs": 3, "train.warmup_epochs": 1})
    run = PretrainRun(cfg, splits=digits_splits)
    losses = [run.train_epoch()["loss"] for _ in range(3)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.95 * losses[0], losses
    assert run.epoch == 3


def test_epoch_metrics(tiny_cfg, digits_splits):
    run = PretrainRun(tiny_cfg, splits=digits_splits)
    m = run.train_epoch()
    n_train = len(digits_splits.pretrain)
    assert m["images"] == (n_train // 64) * 64  # drop_last
    assert m["skipped_images"] == 0 and m["epoch"] == 1
    assert m["images_per_s"] > 0 and m["grad_norm"] > 0
    assert m["loss"] == pytest.approx(m["loss_masked"])  # visible_weight = 0 -> masked term only
    assert "loss_fgbg" not in m
    # lr = base_lr * global batch / 512, and the warmup has not finished after epoch 1 of 2
    assert run.lr == pytest.approx(tiny_cfg.train.base_lr * 64 / 512)
    assert 0 < m["lr"] <= run.lr


def test_resume_from_state_dict_is_exact(tiny_cfg, digits_splits, tmp_path):
    straight = PretrainRun(tiny_cfg, splits=digits_splits)
    straight.train_epoch()
    straight.train_epoch()

    first = PretrainRun(tiny_cfg, splits=digits_splits)
    first.train_epoch()
    path = tmp_path / "state.pt"
    torch.save(first.state_dict(), path)
    del first
    torch.rand(1000)  # a restarted process's global RNG is wherever it is; resume must not depend on it
    resumed = PretrainRun(tiny_cfg, splits=digits_splits)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.epoch == 1
    resumed.train_epoch()

    assert resumed.epoch == straight.epoch == 2
    assert states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert straight.scheduler.last_epoch == resumed.scheduler.last_epoch
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    s_opt, r_opt = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(s_opt[k]["exp_avg"], r_opt[k]["exp_avg"]) for k in s_opt)


def test_resume_without_optimizer_state_differs(tiny_cfg, digits_splits):
    """Guards the test above: dropping the optimiser state must be visible in the weights."""
    straight = PretrainRun(tiny_cfg, splits=digits_splits)
    straight.train_epoch()
    state = straight.state_dict()
    straight.train_epoch()
    partial = PretrainRun(tiny_cfg, splits=digits_splits)
    partial.model.load_state_dict(state["model"])
    partial.epoch = 1
    partial.train_epoch()
    assert not states_equal(straight.model.state_dict(), partial.model.state_dict())


def _tiny_splits(splits, n=64):
    from torch.utils.data import Subset

    return dataclasses.replace(splits, pretrain=Subset(splits.pretrain, range(n)))


def test_non_finite_inputs_raise(tiny_cfg, digits_splits):
    run = PretrainRun(tiny_cfg, splits=digits_splits)
    batch = collate_skip([run.pretrain_ds[i] for i in range(8)])
    batch["img"][0, 0, 0, 0] = float("nan")
    poisoned = PretrainRun(tiny_cfg, splits=digits_splits, pretrain_loader=[batch])
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        poisoned.train_epoch()


def test_non_finite_lr_raises(tiny_cfg, digits_splits):
    run = PretrainRun(tiny_cfg, splits=_tiny_splits(digits_splits, n=128))  # 2 steps per epoch
    run.scheduler.base_lrs = [float("inf")] * len(run.scheduler.base_lrs)  # poison the schedule
    for g in run.optimizer.param_groups:
        g["lr"] = float("inf")
    with pytest.raises(NonFiniteLoss):
        run.train_epoch()


@pytest.mark.parametrize("protocol", ["finetune", "linear", "knn"])
def test_evaluation_protocols(tiny_cfg, digits_splits, protocol):
    run = PretrainRun(tiny_cfg.with_overrides({"eval.epochs": 1}), splits=digits_splits)
    before = copy.deepcopy(run.model.encoder.state_dict())
    out = run.final_eval(protocol)
    assert 0.0 <= out["val_accuracy"] <= 1.0 and out["val_count"] == len(digits_splits.val)
    assert "test_accuracy" not in out  # a search trial never measures the test split
    assert out["params"] == sum(p.numel() for p in run.model.encoder.parameters())
    assert out["flops"] > 0
    # evaluation works on a copy: the pre-trained encoder is untouched
    assert states_equal(before, run.model.encoder.state_dict())


def test_linear_probe_survives_a_last_batch_of_one(tiny_cfg, digits_splits):
    """BatchNorm cannot train on one sample: a labelled set of 8k+1 images used to crash the probe."""
    from simmim_ray.engine.evaluate import Classifier

    run = PretrainRun(tiny_cfg, splits=digits_splits)
    clf = Classifier(copy.deepcopy(run.model.encoder), 10, frozen=True).train()
    assert clf(torch.rand(1, 3, 16, 16)).shape == (1, 10)
    n_lab = len(run._labeled(train_aug=False))
    bs = n_lab - 1  # two batches: n_lab - 1 images, then one
    out = PretrainRun(tiny_cfg.with_overrides({"eval.epochs": 1, "eval.batch_size": bs}),
                      splits=digits_splits).final_eval("linear")
    assert 0.0 <= out["val_accuracy"] <= 1.0


def test_knn_is_above_chance_on_digits(tiny_cfg, digits_splits):
    run = PretrainRun(tiny_cfg, splits=digits_splits)
    run.train_epoch()
    acc = run.final_eval("knn")["val_accuracy"]
    assert acc > 0.2  # 10 classes: chance is 0.1
    assert run.proxy() == {"proxy_knn": pytest.approx(acc)}
    assert PretrainRun(tiny_cfg.with_overrides({"eval.proxy": "none"}), splits=digits_splits).proxy() == {}


def test_finetune_learns_on_digits(tiny_cfg, digits_splits):
    cfg = tiny_cfg.with_overrides({"eval.labeled_fraction": 0.5, "eval.epochs": 6, "eval.base_lr": 0.02})
    run = PretrainRun(cfg, splits=build_splits(cfg))
    out = run.final_eval("finetune", splits=("val", "test"))
    assert out["val_accuracy"] > 0.3 and out["test_accuracy"] > 0.3
    assert (out["val_count"], out["test_count"]) == (len(run.splits.val), len(run.splits.test))


def test_finetune_seed_changes_the_fine_tune_only(tiny_cfg, digits_splits):
    """Confirmation re-seeds the fine-tune of one pre-trained encoder: same seed, same answer; the pre-trained
    weights are untouched either way."""
    run = PretrainRun(tiny_cfg.with_overrides({"eval.epochs": 2}), splits=digits_splits)
    before = copy.deepcopy(run.model.encoder.state_dict())
    a, b = run.final_eval(seed=1), run.final_eval(seed=1)
    c = run.final_eval(seed=2)
    assert a == b
    assert c["val_accuracy"] != a["val_accuracy"] or c != a
    assert states_equal(before, run.model.encoder.state_dict())


def test_corrupt_images_are_counted_in_training(tmp_path):
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=10, corrupt=2, truncated=1)
    cfg = Config.from_dict({
        "model": {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2},
        "mask": {"patch_size": 8}, "data": {"source": "imagefolder", "path": str(tmp_path / "imgs")},
        # one batch larger than the training split, so no image is dropped by drop_last
        "train": {"epochs": 1, "batch_size": 32}, "eval": {"epochs": 1, "proxy": "none"}})
    run = PretrainRun(cfg)  # an image folder streams: this process reads it unit by unit
    assert run.streamed
    from simmim_ray.data.scan import scan
    from simmim_ray.data.stream_batches import local_batches

    plan = scan(cfg)
    in_train = sum(int((~b["valid"]).sum()) for b in local_batches(cfg, plan, "pretrain", "eval", 64)())
    assert in_train >= 1  # the class-0 folder keeps some of its bad files in the pre-training pool
    m = run.train_epoch()
    assert m["skipped_images"] == in_train
    assert m["images"] + m["skipped_images"] == plan.sizes["pretrain"]
    assert run.image_grid(n=4).shape == (3, 3 * 16, 4 * 16)  # from the first streamed batch


def test_fgbg_head_trains_on_digits(tiny_cfg, digits_splits):
    cfg = tiny_cfg.with_overrides({"loss.fgbg_weight": 0.5})
    run = PretrainRun(cfg, splits=digits_splits)
    m1 = run.train_epoch()
    m2 = run.train_epoch()
    assert "loss_fgbg" in m1
    assert m1["loss"] == pytest.approx(m1["loss_masked"] + 0.5 * m1["loss_fgbg"], rel=1e-4)
    assert m2["loss_fgbg"] < m1["loss_fgbg"]


def test_image_grid(tiny_cfg, digits_splits):
    """What was masked shows whatever the image: hidden patches filled with a colour no digit has (digits are grey
    on black), the same patches tinted red in the reconstruction, the visible ones as in the original."""
    from simmim_ray.engine.run import HIDDEN_FILL

    run = PretrainRun(tiny_cfg, splits=digits_splits)
    grid = run.image_grid(n=4)
    assert grid.shape == (3, 3 * 16, 4 * 16)
    assert grid.min() >= 0 and grid.max() <= 1
    original, masked, rec = grid[:, :16], grid[:, 16:32], grid[:, 32:]
    hidden = (masked - torch.tensor(HIDDEN_FILL).view(3, 1, 1)).abs().amax(0) < 1e-6
    share = hidden.float().mean().item()
    assert 0.3 < share < 0.9, share  # about the mask ratio of the patches
    assert torch.equal(masked[:, ~hidden], original[:, ~hidden]) and torch.equal(rec[:, ~hidden], original[:, ~hidden])
    assert (rec[0, hidden] - rec[1, hidden]).mean() > 0.15  # red tint on what the model predicted


# ---- optimiser ---------------------------------------------------------------------------------------------
def test_param_groups_no_decay_rules(tiny_cfg):
    model = build_simmim(tiny_cfg)
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    for n in ("encoder.mask_token", "encoder.vit.class_token", "encoder.vit.encoder.pos_embedding"):
        assert n in plain
    assert all(not n.endswith(".bias") and "ln" not in n.split(".")[-2] for n in decayed)
    assert "encoder.vit.conv_proj.weight" in decayed and "decoder.0.weight" in decayed


def test_layer_decay_scales_lr(tiny_cfg):
    model = build_simmim(tiny_cfg)
    groups = param_groups(model, 0.05, layer_decay=0.5)
    opt = build_optimizer(groups, lr=1.0, flat=False)  # per-tensor groups, to look the lrs up
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    p = dict(model.named_parameters())
    depth = tiny_cfg.model.depth  # 2 blocks: embeddings get 0.5^3, block 0 0.5^2, block 1 0.5, head 1
    assert lr_of[id(p["encoder.vit.conv_proj.weight"])] == pytest.approx(0.5 ** (depth + 1))
    assert lr_of[id(p["encoder.vit.encoder.layers.encoder_layer_0.mlp.0.weight"])] == pytest.approx(0.5 ** depth)
    assert lr_of[id(p["encoder.vit.encoder.layers.encoder_layer_1.mlp.0.weight"])] == pytest.approx(0.5)
    assert lr_of[id(p["decoder.0.weight"])] == pytest.approx(1.0)


def test_warmup_cosine_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = warmup_cosine(opt, 1.0, 0.01, warmup_iters=10, total_iters=110)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))  # linear warmup
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))  # cosine decay
    assert lrs[60] == pytest.approx(0.01 + 0.99 * 0.5, rel=1e-6)  # halfway down
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert scaled_lr(2e-4, 2048) == pytest.approx(8e-4)


def test_swin_layer_ids_are_ordered():
    cfg = Config.from_dict({"model": {"arch": "swin", "img_size": 16, "patch_size": 2, "embed_dim": 16,
                                      "depths": [1, 2], "heads": [2, 4], "window_size": 4}})
    enc = build_simmim(cfg).encoder
    rules = enc.param_rules()
    ids = {n: layer_id(rules, n) for n, _ in enc.named_parameters()}
    assert set(ids.values()) <= set(range(enc.num_layers + 2))
    assert ids["mask_token"] == 0 and ids["swin.features.0.0.weight"] == 0
    assert ids["swin.norm.weight"] == enc.num_layers + 1
    first = [v for n, v in ids.items() if n.startswith("swin.features.1.0.")]
    last = [v for n, v in ids.items() if n.startswith("swin.features.3.1.")]
    assert set(first) == {1} and set(last) == {3}
