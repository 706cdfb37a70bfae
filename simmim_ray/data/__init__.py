"""Data sources (digits, CIFAR-10, image folders, Parquet), SimMIM transforms and splits. Pure PyTorch."""
from simmim_ray.data.splits import Splits, build_splits
from simmim_ray.data.transforms import EvalTransform, PretrainTransform, collate_skip

__all__ = ["Splits", "build_splits", "PretrainTransform", "EvalTransform", "collate_skip"]
