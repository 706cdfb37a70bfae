"""Studies that chose the product's defaults (the digits recipe and its baselines, the early-stopping proxy): each
runs for minutes to hours, stores its raw records beside it (JSON) and renders the tables in docs/ that the
defaults cite. Run from the repository root as `python -m benchmarks.studies.NAME`."""
