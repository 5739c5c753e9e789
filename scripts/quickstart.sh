#!/usr/bin/env bash
# The main job: set up, pretrain SimCLR offline on scikit-learn's bundled digits for 3 minutes on the CPU,
# then print kNN and linear accuracy of the learned h beside raw pixels and a random-init encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN=${RUN:-runs/quickstart-digits}
rm -rf "$RUN"
.venv/bin/simclr pretrain --data digits --config configs/digits_cpu.yaml --out "$RUN" --time-budget 3
.venv/bin/simclr eval compare --checkpoint "$RUN" --data digits
