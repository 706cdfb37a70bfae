"""The answer stage, after the trials: confirmation, baselines, report and tables. It never touches Tune."""
