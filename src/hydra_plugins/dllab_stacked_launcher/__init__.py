"""Hydra finds dllab's stacked launcher here (``hydra_plugins`` is Hydra's plugin namespace)."""
