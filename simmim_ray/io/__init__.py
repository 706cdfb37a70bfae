"""Driver-side I/O: strict YAML, config files, experiment storage (paths and URIs), best/ export, TensorBoard."""
