"""Hydra finds dllab's joblib launcher here (``hydra_plugins`` is Hydra's plugin namespace)."""
