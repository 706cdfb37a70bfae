"""Data sources (digits, CIFAR-10, image folders, Parquet), SimMIM transforms and splits. Pure PyTorch.

The surface loads on first use (simmim_ray/facade.py): Ray Data's coordinators and Train's controller unpickle the
streamed pipelines, which import this package's scan and read modules, and need none of torch or torchvision (which
splits.py and transforms.py import).
"""
from simmim_ray.facade import surface

__all__, __getattr__ = surface(__name__, {
    "Splits": "splits",
    "build_splits": "splits",
    "PretrainTransform": "transforms",
    "EvalTransform": "transforms",
    "collate_skip": "transforms",
})
