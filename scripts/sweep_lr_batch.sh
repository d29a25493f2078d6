#!/usr/bin/env bash
# Learning rate × batch size grid on the circle (SGD): 4 × 4 = 16 jobs, in parallel.
set -euo pipefail
exec dllab-train -m hydra/launcher=joblib data=circle optimizer=sgd \
  optimizer.lr=0.003,0.01,0.03,0.1 data.batch_size=1,10,30,100 trainer.max_epochs=50 "$@"
