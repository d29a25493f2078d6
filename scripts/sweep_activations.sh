#!/usr/bin/env bash
# The lecture's activation demo: circle and xor × relu, sigmoid, tanh with plain SGD,
# lr 0.03, batch 10 (6 jobs, 2 at a time). Extra arguments are passed on (trainer.max_epochs=100).
set -euo pipefail
exec dllab-train -m hydra/launcher=joblib \
  data=circle,xor model.activation=relu,sigmoid,tanh \
  optimizer=sgd optimizer.lr=0.03 data.batch_size=10 trainer.max_epochs=50 "$@"
