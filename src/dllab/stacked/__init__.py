"""Stacked sweeps: many small models of one shape trained at once as one batched model, each
exactly as it trains alone (``hydra/launcher=stacked``; see docs/sweeps.md, "Stacked sweeps")."""
