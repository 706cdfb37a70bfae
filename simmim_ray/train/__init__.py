"""Ray Train: one training job on its workers. launch.py builds the `TorchTrainer` (driver side) around
`worker_loop`, which runs trial_loop.py (a training run: a search trial, `simmim-ray train`) or seed_loop.py (a
seed job of the answer stage) from worker_context.py's rank, device and data; loop_config.py is what the workers
receive. datasets.py / streams.py / data_cpus.py: Ray Data for streamed sources; ray_init.py: starting or joining
Ray; resources.py: whether a job's workers fit, checked before Ray starts."""
