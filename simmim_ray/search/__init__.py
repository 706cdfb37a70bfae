"""The search service: spaces, constrained Optuna searcher, Tune driver, results and report."""
