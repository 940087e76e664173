#!/usr/bin/env bash
# The three study pipelines at full size on a GPU machine, side by side under one wall-clock
# budget (issues 5 and 7). Reports (no checkpoints) packed into $OUT/studies.tgz.
#   bash tools/device/studies.sh [MINUTES]
set -u
MIN=${1:-5.5}
cd "$(dirname "$0")/../.."
. tools/device/setup.sh
S=/tmp/studies; mkdir -p $S
timeout 900 python3 -u analyses/ctrnn_tasks/run.py --out $S/ctrnn_tasks --jobs 8 \
  --max-minutes "$MIN" --quiet > $S/ctrnn_tasks.log 2>&1 &
timeout 900 python3 -u analyses/seqmnist_dynamics/run.py --out $S/seqmnist --device cuda \
  --jobs 4 --max-minutes "$MIN" --quiet > $S/seqmnist.log 2>&1 &
timeout 900 python3 -u analyses/oscillator_prediction/run.py --out $S/oscillator --device cuda \
  --splits random,left_right,up_down --jobs 3 --max-minutes "$MIN" --quiet \
  > $S/oscillator.log 2>&1 &
wait
for f in $S/*.log; do echo "== $f"; tail -n 6 "$f"; done
tar czf "$OUT/studies.tgz" --exclude='*.pt' --exclude='*.ckpt' -C /tmp studies
ls -la "$OUT"
