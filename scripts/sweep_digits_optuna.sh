#!/usr/bin/env bash
# Bayesian search (TPE, 20 trials, median pruning) on digits. Run it again and the study
# continues (logs/digits/multiruns/optuna_digits_optuna/optuna.db);
# hydra.sweeper.n_trials=40 extends it, hydra/launcher=joblib hydra.sweeper.n_jobs=2 runs 2 trials at once.
set -euo pipefail
exec dllab-train -m hparams_search=digits_optuna "$@"
