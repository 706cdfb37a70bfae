"""One search trial: the Tune trial function and how its Train run talks to Tune."""
