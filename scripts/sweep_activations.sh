#!/usr/bin/env bash
# The lecture's activation demo (conf/experiment/activations.yaml): relu, tanh and sigmoid on
# the circle with plain SGD, lr 0.03, batch 10 (3 jobs, in parallel). Extra arguments are passed
# on (seed=2, trainer.max_epochs=20, model.activation=relu,tanh,sigmoid,gelu).
set -euo pipefail
exec dllab-train -m hydra/launcher=joblib experiment=activations "$@"
