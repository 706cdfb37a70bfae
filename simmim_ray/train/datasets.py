"""Ray Data pipelines of a streamed source (Parquet, image folder), one per split, built from the driver's scan.

Each pipeline is: the split's units (scan.Unit: a row group, or a chunk of a class folder) as a tiny dataset, one
block per unit -> one task per unit that reads the unit's rows of the split (stream_read.read_unit) and decodes
and augments them a chunk at a time (decode.StreamTransform), yielding uint8 batches. No process holds more than
a unit. The tasks run wherever Ray places them, or only on nodes with the label `data.preprocess_nodes` (CPU-only
preprocessing nodes), within the CPUs `data_cpus.plan_data_cpus` left to Ray Data.

The training splits (pre-training pool, labelled) go to Train, which splits each into equal shares per worker
(`StreamDataConfig`): every rank runs the same number of steps. The evaluation splits are read by each worker
itself, over a disjoint share of the units (streams.py): every row once, exact counts.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import ray.data
from ray.data import ExecutionOptions, ExecutionResources
from ray.train import DataConfig

from simmim_ray.config import Config
from simmim_ray.data.scan import StreamPlan, Unit
from simmim_ray.data.stream_read import Selection, read_unit

DECODE_ROWS = 64  # rows decoded per output batch of a read task: bounds a task's decoded memory


@dataclass(frozen=True)
class StreamSetup:
    """What a Train worker needs to build its streams: the scan and where Ray Data may run."""
    plan: StreamPlan
    data_cpus: float  # Ray Data's CPU limit per pipeline (0: no limit)
    task_cpus: float  # CPUs per read/decode task
    node_label: str  # "KEY=VALUE": run the pipelines on nodes with this label only ("": anywhere)

    def execution_options(self):
        opts = ExecutionOptions()
        if self.data_cpus > 0:
            opts.resource_limits = ExecutionResources(cpu=self.data_cpus)
        if self.node_label:
            key, _, value = self.node_label.partition("=")
            opts.label_selector = {key: value}
        return opts


class Decoder:
    """decode.StreamTransform(cfg, kind, with_masks), built in the read task that first calls it. Ray Data's split
    coordinators and dataset managers, and Train's controller, unpickle every pipeline and never run it: built
    here, the transform would make each of those processes, in every Train run, import torch and torchvision
    (decode.py's), which only the read tasks use."""

    def __init__(self, cfg: Config, kind: str, with_masks: bool = False) -> None:
        self.args = (cfg, kind, with_masks)
        self.transform = None

    def __getstate__(self) -> dict:
        return {"args": self.args}  # the arguments travel, never a built transform

    def __setstate__(self, state: dict) -> None:
        self.args, self.transform = state["args"], None

    def __call__(self, table) -> dict[str, np.ndarray]:
        if self.transform is None:
            from simmim_ray.data.decode import StreamTransform  # in the read task only (see the class)

            self.transform = StreamTransform(*self.args)
        return self.transform(table)


def _read_decode(batch, sel, split: str, transform: Decoder):
    cols = {k: batch.column(k).to_pylist() for k in batch.column_names}
    for i in range(batch.num_rows):
        table = read_unit(sel, Unit(**{k: v[i] for k, v in cols.items()}), split)
        for a in range(0, table.num_rows, DECODE_ROWS):
            yield transform(table.slice(a, DECODE_ROWS))


def read_task(plan: StreamPlan, cfg: Config, split: str, kind: str):
    """The function of `split`'s read tasks: a batch of units (as `split_dataset`'s items) -> decoded batches."""
    return functools.partial(_read_decode, sel=Selection.of(plan), split=split,
                             transform=Decoder(cfg, kind, with_masks=plan.has_masks))


def split_dataset(setup: StreamSetup, cfg: Config, split: str, kind: str, units: list[Unit] | None = None):
    """The Ray Dataset of `split`'s rows (of `units`, default all the split's units), decoded as `kind`
    (pretrain | eval | eval_train)."""
    plan = setup.plan
    units = plan.units_for(split) if units is None else units
    order = np.random.default_rng(cfg.seed).permutation(len(units))  # no one class's rows all at once
    items = [asdict(units[i]) for i in order]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.map_batches(read_task(plan, cfg, split, kind), batch_size=1, batch_format="pyarrow",
                        num_cpus=setup.task_cpus)
    ds.context.execution_options = setup.execution_options()
    # one run executes these pipelines every epoch: progress bars and banners would flood the workers' logs
    ds.context.enable_progress_bars = False
    ds.context.print_on_execution_start = False
    return ds


def train_datasets(setup: StreamSetup, cfg: Config) -> dict:
    """The datasets Train shards equally over its workers: the pre-training pool, and the labelled split as the
    final evaluation trains on it (augmented for the fine-tune, plain for the linear probe; none for k-NN)."""
    out = {"pretrain": split_dataset(setup, cfg, "pretrain", "pretrain")}
    if cfg.eval.protocol != "knn":
        out["labeled"] = split_dataset(setup, cfg, "labeled",
                                       "eval_train" if cfg.eval.protocol == "finetune" else "eval")
    return out


def data_config(setup: StreamSetup):
    """Equal shares per worker, with the pipelines' resource limit and node label (Train applies its own
    execution options to the datasets it is given, replacing theirs)."""
    opts = setup.execution_options()
    return DataConfig(datasets_to_split="all", execution_options={"pretrain": opts, "labeled": opts})
