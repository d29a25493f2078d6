"""Sweeps: what a job of a Hydra multirun needs (:mod:`.jobs`), the Optuna search behind
``hydra/sweeper=dllab_optuna`` (:mod:`.search_space`, :mod:`.optuna_search`,
:mod:`.pruning`) and the summary of a sweep dir (:mod:`.summary`, ``dllab-summary``)."""
