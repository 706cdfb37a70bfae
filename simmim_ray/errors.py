"""User-facing errors: the CLI turns these into one line and exit code 2."""


class UserError(ValueError):
    """Bad input from the user (config, space, flags, data, storage). Message is one line."""


class NoFeasibleTrial(RuntimeError):
    """A search finished but no trial reached the accuracy target (CLI exit code 3)."""
