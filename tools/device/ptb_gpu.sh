#!/usr/bin/env bash
# The PTB perplexity table on a GPU machine (issue 4): several R-GLM language models trained at
# once on one GPU (each its own process; the runs are launch-bound, so they share the card well),
# each followed by exact scoring, dynamic evaluation (step size chosen on valid) and the KN5 +
# cache interpolation. Outputs (no checkpoints) are packed into $OUT/ptb.tgz.
#   bash tools/device/ptb_gpu.sh [TRAIN_SECONDS]
set -u
BUDGET=${1:-270}
cd "$(dirname "$0")/../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NEUROREC_DATA=$PWD/.devdata PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
R=/tmp/ptb; mkdir -p $R
run() {  # name spec overrides...
  local name=$1 spec=$2; shift 2
  local sets=(); for s in "$@"; do sets+=(--set "$s"); done
  timeout 560 python3 analyses/ptb_perplexity/run.py --out $R/$name --specs $spec --device cuda \
    --threads 2 --quiet --dynamic-lrs 0.01,0.03,0.1 --set train.max_seconds=$BUDGET "${sets[@]}" \
    > $R/$name.log 2>&1
  echo "$name exit $?"
}
run irlm1000 models/lm/irlm.yaml &
run irlm2000 models/lm/irlm.yaml recurrent.dim=2000 regularisation.dropout=0.6 \
  regularisation.input_dropout=0.2 recurrent.init_scale=0.035 &
run irlm1000_noin models/lm/irlm.yaml regularisation.input_dropout=0.0 regularisation.column_norm=5 &
run rglm500 models/lm/rglm_lm.yaml recurrent.dim=500 regularisation.dropout=0.5 \
  recurrent.radius_every=50 train.batch_size=64 train.lr=1e-3 train.epochs=40 \
  train.eval_every=250000 recurrent.init_scale=0.05 &
run plain200 models/lm/rglm_lm_plain.yaml recurrent.radius_every=20 train.epochs=40 \
  train.batch_size=64 train.eval_every=250000 &
run l1_200 models/lm/rglm_lm_l1.yaml recurrent.radius_every=20 train.epochs=40 \
  train.batch_size=64 train.eval_every=250000 &
wait
for f in $R/*/table.md; do echo "== $f"; tail -n 8 "$f"; done
tar czf "$OUT/ptb.tgz" --exclude='*.pt' -C /tmp ptb
ls -la "$OUT"
