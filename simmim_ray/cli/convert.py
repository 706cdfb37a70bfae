"""`simmim-ray convert SRC OUT --from imagefolder|cifar10`: write Parquet shards that `data.source=parquet` reads."""
from __future__ import annotations

import os

from simmim_ray.cli.args import path_arg, positive_int
from simmim_ray.data.convert import DEFAULT_ROWS_PER_SHARD, convert


def add_parser(sub) -> None:
    c = sub.add_parser("convert", help="turn an image folder or CIFAR-10 into Parquet shards for data.source=parquet")
    c.add_argument("src", type=path_arg("convert SRC", "an image folder or CIFAR-10 root"),
                   help="image folder root (<class>/<image>) or CIFAR-10 root (holds cifar-10-batches-py/)")
    c.add_argument("out", type=path_arg("convert OUT", "an output directory"),
                   help="output directory for part-NNNNN.parquet shards (must be empty or absent, outside SRC)")
    c.add_argument("--from", dest="src_format", required=True, choices=("imagefolder", "cifar10"))
    c.add_argument("--rows-per-shard", type=positive_int("--rows-per-shard"), default=DEFAULT_ROWS_PER_SHARD)


def run(args) -> int:
    counts = convert(args.src, args.out, args.src_format, args.rows_per_shard)
    where = args.out if "://" in args.out else os.path.abspath(args.out)  # an object-store URI stays as given
    first = f", first: {counts['first_skipped']}" if counts["first_skipped"] else ""
    print(f"simmim-ray convert: {counts['rows']} images in {counts['shards']} shard(s) -> {where}"
          f" ({counts['skipped']} unreadable skipped{first})")
    return 0
