"""The experiment record: its directory, ledger, lease, trust record and Optuna study."""
