#!/usr/bin/env bash
# SGD vs Adam vs Adagrad on digits, the jobs in parallel on this machine.
set -euo pipefail
exec dllab-train -m hydra/launcher=joblib optimizer=sgd,adam,adagrad "$@"
