"""The answer stage, after the trials: which configuration is the answer, measured how well. It never touches Tune:
change the answer here without opening the driver. Everything it decides is derived from the experiment's ledger,
so `simmim-ray report` says what the search said.

- stage.py: the whole stage as the search runs it (`run_answer_stage`): tables, confirmation, baselines, best/,
  plots, the printed report, the exit code
- answer.py: measures what the ledger lacks (seed jobs, the pixel baseline), records it, exports best/
- confirm.py: the candidates and the decision on fresh seeds (pure); seed_jobs.py runs the seed jobs on Ray Train
- baselines.py: pixel logistic regression; the scratch baseline is a seed job
- stats.py: Wilson and t intervals; report.py: the report and its `--json` contract; tables.py: results.parquet,
  history.parquet, pareto.png; hparams.py: TensorBoard's HParams table
"""
from simmim_ray.facade import surface

__all__, __getattr__ = surface(__name__, {
    "run_answer_stage": "stage",
    "no_answer_message": "stage",
    "measure_answer": "answer",
    "export": "answer",
    "labeled_fraction": "answer",
    "SeedJobSetup": "seed_jobs",
    "run_jobs": "seed_jobs",
    "plan_jobs": "confirm",
    "pick_winner": "confirm",
    "pixel_logreg": "baselines",
    "seed_summary": "stats",
    "wilson_interval": "stats",
    "write_tables": "tables",
})
