"""Hydra finds dllab's SLURM launcher here (``hydra_plugins`` is Hydra's plugin namespace)."""
