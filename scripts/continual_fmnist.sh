#!/usr/bin/env bash
# The paper's Fig. 2 analogue on Fashion-MNIST: class-incremental learning whose memory is the embedded RDED IPC 10
# set's images of the seen classes (the SRe2L/GIFT protocol), a fresh ConvNet-3 per step, KL (T = 20) against GIFT.
# Resumable: re-running skips the finished steps. Run from the repository root:  bash scripts/continual_fmnist.sh
# (nbs/repro/continual holds the committed runs, written by an earlier version before the results store: read, not
# resumed, so a rerun goes to a new OUT.)
# EPOCHS, REPEATS and OUT override the defaults; STEPS lists the protocols (10 steps: one class per step, the first
# one recorded at 100% without training).
set -euo pipefail
EPOCHS=${EPOCHS:-50}; REPEATS=${REPEATS:-3}; OUT=${OUT:-runs/continual}; STEPS=${STEPS:-5 10}
for steps in $STEPS; do
  gift-continual --steps "$steps" --loss gift,kl --epochs "$EPOCHS" --repeats "$REPEATS" --out "$OUT/steps$steps"
done
