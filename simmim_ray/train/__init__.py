"""Ray Train layer: the TorchTrainer launch, the per-worker loop, the torch backend, Ray start-up."""
