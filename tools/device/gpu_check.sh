#!/usr/bin/env bash
# Every GPU check in one command, for the device machine (carry .whl and .devdata):
#
#     bash tools/device/gpu_check.sh
#
#   (a) tests/test_cuda.py on cuda vs cpu             -> $OUT/test_cuda.log
#   (b) CLI smoke: `neurorec fit models/glm_v1.yaml --data v1_gratings:14 --set fit.max_iter=100`
#       with --device cuda and with --device cpu, bits/spike compared
#                                                       -> $OUT/cli_metrics_{cuda,cpu}.json, cli_fit.log
#   (c) benchmarks/run_all.py --quick --device cuda    -> $OUT/RESULTS_gpu.md, run_all.log
#   and a summary of all three                          -> $OUT/gpu_check.log (and stdout)
#
# Each step runs under `timeout`, so the whole script ends within BUDGET_S seconds (the
# benchmarks get what is left; RESULTS_gpu.md is rewritten after every benchmark, so a cut-off
# run still reports the finished ones). At most 7 files land in $OUT (the device tool returns 8).
#
# Environment (all optional): OUT (default ./gpu_out), DEVICE (cuda), BUDGET_S (350),
# BENCH (benchmarks, in the order run), BENCH_TIMEOUT (seconds per benchmark, 100),
# CLI_SET (the smoke fit's --set, fit.max_iter=100),
# NEUROREC_SKIP_WHEELS=1 (no wheel install; for a dry run on a machine that has the packages).
# Dry run on a CPU machine:
#     NEUROREC_SKIP_WHEELS=1 DEVICE=cpu BENCH=matmul_peak OUT=/tmp/gc bash tools/device/gpu_check.sh
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 1
T0=$(date +%s)
OUT=${OUT:-$PWD/gpu_out}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-350}
BENCH=${BENCH:-"matmul_peak ctrnn_sim lm_train scaling glm_fit brian2_glm"}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-100}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET_S - $(date +%s) + T0 )); }
say() { echo "[$(elapsed) s] $*" | tee -a "$LOG"; }
cap() { local want=$1 l; l=$(( $(left) - 5 )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }

say "gpu_check: device $DEVICE, budget ${BUDGET_S} s, out $OUT, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
{ . tools/device/setup.sh; } >"$OUT/setup.tmp" 2>&1
setup_rc=$?
tee -a "$LOG" <"$OUT/setup.tmp"
rm -f "$OUT/setup.tmp"
if [ $setup_rc -ne 0 ]; then
    say "setup failed (exit $setup_rc): see above"
    exit 2
fi

# (a) every torch path, CUDA vs CPU
say "(a) tests/test_cuda.py (NEUROREC_TEST_DEVICE=$DEVICE)"
NEUROREC_TEST_DEVICE=$DEVICE timeout -k 10 "$(cap 170)" python3 -m pytest -q tests/test_cuda.py \
    -p no:cacheprovider -rs --durations=12 -W ignore::DeprecationWarning \
    >"$OUT/test_cuda.log" 2>&1
tests_rc=$?
tail -n 45 "$OUT/test_cuda.log" | tee -a "$LOG"
say "(a) tests exit $tests_rc$([ $tests_rc -eq 124 ] && echo ' (timed out)')"

# (b) the command line on the device, compared with the CPU
CLI_SET=${CLI_SET:-fit.max_iter=100}
say "(b) neurorec fit models/glm_v1.yaml --data v1_gratings:14 --set $CLI_SET --device $DEVICE$([ "$DEVICE" != cpu ] && echo ', then cpu')"
: >"$OUT/cli_fit.log"
for dev in "$DEVICE" cpu; do
    dir=/tmp/gpu_check_fit_$dev
    rm -rf "$dir" "$dir.partial"
    start=$(date +%s)
    timeout -k 5 "$(cap 80)" python3 -m neurorec.cli fit models/glm_v1.yaml --data v1_gratings:14 \
        --set "$CLI_SET" --out "$dir" --device "$dev" --quiet >>"$OUT/cli_fit.log" 2>&1
    rc=$?
    say "    --device $dev: exit $rc in $(( $(date +%s) - start )) s"
    [ -f "$dir/metrics.json" ] && cp "$dir/metrics.json" "$OUT/cli_metrics_$dev.json"
    [ "$dev" = cpu ] && break
done
tail -n 6 "$OUT/cli_fit.log" | tee -a "$LOG"
python3 - "$OUT" "$DEVICE" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
out, dev = Path(sys.argv[1]), sys.argv[2]
got = {d: json.loads((out / f"cli_metrics_{d}.json").read_text())
       for d in (dev, "cpu") if (out / f"cli_metrics_{d}.json").is_file()}
for d, m in got.items():
    print(f"    {d}: bits/spike {m['bits_per_spike']:.12f}, LL {m['log_likelihood']:.6f}, "
          f"fit {m['fit_time_s']:.2f} s, {m['convergence']['n_iter']} iterations "
          f"({m['convergence']['reason']})")
if len(got) == 2 and dev != "cpu":
    a, b = got[dev]["bits_per_spike"], got["cpu"]["bits_per_spike"]
    print(f"    CLI bits/spike {dev} vs cpu: relative difference {abs(a - b) / abs(b):.2e}; "
          f"fit time ratio cpu / {dev}: {got['cpu']['fit_time_s'] / got[dev]['fit_time_s']:.2f}")
EOF

# (c) the benchmark suite on the device, with what is left of the budget
budget=$(( $(left) - 5 ))
if [ "$budget" -gt 20 ]; then
    say "(c) benchmarks/run_all.py --quick --device $DEVICE --only $BENCH (${budget} s left)"
    # shellcheck disable=SC2086  # BENCH is a list of names
    timeout -k 5 "$budget" python3 benchmarks/run_all.py --quick --device "$DEVICE" --only $BENCH \
        --timeout "$BENCH_TIMEOUT" --out "$OUT/RESULTS_gpu.md" >"$OUT/run_all.log" 2>&1
    rc=$?
    say "(c) run_all exit $rc$([ $rc -eq 124 ] && echo ' (cut at the budget: the rest is not run)')"
    if [ -f "$OUT/RESULTS_gpu.md" ]; then
        sed -n '/^## Summary/,/^## `/p' "$OUT/RESULTS_gpu.md" | sed '$d' | tee -a "$LOG"
    fi
else
    say "(c) benchmarks skipped: only ${budget} s left of the budget"
fi
say "gpu_check done in $(elapsed) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $tests_rc
