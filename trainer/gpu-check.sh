#!/usr/bin/env bash
# The trainer's GPU check, in one run of a few minutes: SFT then DPO through the trainer's code
# path with the loss going down, then the fast preset against TRL's defaults on a random
# 1B-class model (tokens/s and peak memory). On a machine without a GPU it runs small on CPU.
# Uses the python given as TWIN_TRAINER_PYTHON (default: scripts/trainer-env's environment).
#   trainer/gpu-check.sh [--size 1b|small] [--steps N]
set -euo pipefail
cd "$(dirname "$0")"
python="${TWIN_TRAINER_PYTHON:-$(../scripts/trainer-env)}"
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  exec "$python" -m twin_trainer.gpu_check "$@"
