"""Driver-side I/O, kept out of the pure core: what the layers above read and write, and the core never imports.

- yamlio.py: YAML the user gives, safe, bounded and strict; configio.py: YAML <-> Config, `--set` overrides
- storage.py: local paths and URIs (file://, s3://, gs://) through pyarrow, the shared-storage rule
- export.py: best/ (encoder weights, config.yaml, metrics.json) and loading it back
- tblog.py: TensorBoard scalars and image grids from rank 0
"""
from simmim_ray.facade import surface

__all__, __getattr__ = surface(__name__, {
    "load_config": "configio",
    "dump_config": "configio",
    "parse_set": "configio",
    "read_yaml": "yamlio",
    "parse_yaml": "yamlio",
    "export_best": "export",
    "load_encoder": "export",
    "TBLogger": "tblog",
})
