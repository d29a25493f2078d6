"""dllab: deep-learning lab experiments as commands."""
