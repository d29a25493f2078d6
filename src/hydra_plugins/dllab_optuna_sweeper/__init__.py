"""Hydra finds dllab's Optuna sweeper here (``hydra_plugins`` is Hydra's plugin namespace)."""
