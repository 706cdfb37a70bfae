"""simmim-ray: constrained SimMIM backbone search on Ray Train + Ray Tune + Optuna."""
__version__ = "0.1.0"
