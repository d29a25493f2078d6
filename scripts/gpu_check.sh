#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (not part of CI, which has none):
# the test suite's GPU-marked tests, the benchmark on CUDA with bf16-mixed precision, then
# issue 26's whole sweeps on CUDA (one repeat, the grids' epochs halved). Meant to finish in
# under 10 minutes (the sweeps case is new and has not run on a GPU yet).
# PYTHON picks the interpreter (default: .venv's, made by make).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
"$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
"$PYTHON" -m pytest -q -m gpu tests/test_gpu.py
"$PYTHON" scripts/benchmark.py --device cuda --precision bf16-mixed --quick
"$PYTHON" scripts/benchmark.py --device cuda --cases sweeps --quick --repeats 1
