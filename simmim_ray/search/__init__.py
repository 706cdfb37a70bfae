"""The search: Ray Tune runs trials, Optuna proposes configurations, the answer is the smallest feasible model.

At the top, the search itself: driver.py (`run_search`: Tune + Optuna), settings.py (every setting and default),
space.py (search spaces), searcher.py (one objective under the accuracy constraint) with incumbent.py (what a sample
must beat) and study.py (the study's sampler, trial marks and orphans), size.py, untried.py, warm_start.py,
schedulers.py, progress.py (the terminal's trial lines). Below it, one folder per stage: trial/ (one trial between
Tune and Train), record/ (the experiment record), answer/ (the stage after the trials, which never touches Tune)."""
