"""Ray versions the lean trial path (see simmim_ray/_compat/__init__.py) was tested on.

Add a version only after tests/unit/_compat/ and tests/scenarios/ (test_trial_stop.py, test_trial_report.py,
test_train_backend_ray.py, test_search_e2e.py) pass on it; any other Ray runs the public path.
"""
LEAN_TESTED_RAY = ("2.60.0",)
