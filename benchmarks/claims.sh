#!/usr/bin/env bash
# Reproduces every figure in README's "Measured" section on a 2-core CPU (about 35 minutes).
#   bash benchmarks/claims.sh [WORKDIR]      -> WORKDIR/*.json and benchmarks/results/*.json
set -euo pipefail
W=${1:-runs/claims}
R=benchmarks/results
mkdir -p "$W" "$R"
[ -d "$W/data" ] || dis-data synth "$W/data"            # 200 labelled, 100 val, 400 tag-only (20% tags dropped, 5% added)
D="$W/data"
common=(--stages 2 --size 256)

# Few labels (the DIS setting): 25 labelled images + 400 tag-only images.
[ -f "$W/few_s1/best.pt" ] || dis-train --data "$D" --out "$W/few_s1" "${common[@]}" --max-train 25 --epochs 30 --steps-per-epoch 10
[ -f "$W/few_s1c/best.pt" ] || dis-train --data "$D" --out "$W/few_s1c" --stage 1 --init "$W/few_s1/best.pt" --max-train 25 --epochs 4 --steps-per-epoch 50 --lr 0.002
[ -f "$W/few_s2/best.pt" ] || dis-train --data "$D" --out "$W/few_s2" --stage 2 --init "$W/few_s1/best.pt" --max-train 25 --epochs 4 --steps-per-epoch 50 --lr 0.002 --iters-train 5
# All 200 labelled images + the same 400 tag-only images.
[ -f "$W/full_s1/best.pt" ] || dis-train --data "$D" --out "$W/full_s1" "${common[@]}" --epochs 15
[ -f "$W/full_s1c/best.pt" ] || dis-train --data "$D" --out "$W/full_s1c" --stage 1 --init "$W/full_s1/best.pt" --epochs 4 --steps-per-epoch 50 --lr 0.002
[ -f "$W/full_s2/best.pt" ] || dis-train --data "$D" --out "$W/full_s2" --stage 2 --init "$W/full_s1/best.pt" --epochs 4 --steps-per-epoch 50 --lr 0.002 --iters-train 5

for run in few_s1 few_s1c few_s2 full_s1 full_s1c full_s2; do
  dis-eval "$W/$run/best.pt" --data "$D" --iters 0,1,3,5 --json "$W/$run.val.json"
done
# Tag cleaning and pseudo labels on the tag-only split (noisy tags in the energy), from each stage-1 model.
for run in few_s1 full_s1; do
  dis-eval "$W/$run/best.pt" --data "$D" --split weak --iters 0,1,3,5 --json "$W/$run.weak.json"
  dis-eval "$W/$run/best.pt" --data "$D" --split weak --iters 0,5 --tag-weight 0 --json "$W/$run.weak_notags.json"
done
# Ablations on the few-label stage-1 model: tag gate and step size.
for gate in multiply log none; do
  dis-eval "$W/few_s1/best.pt" --data "$D" --iters 0,3 --tag-gate "$gate" --json "$W/few_s1.gate_$gate.json"
done
for step in 10 30 100 300; do
  dis-eval "$W/few_s1/best.pt" --data "$D" --iters 0,1,3,5 --step-size "$step" --json "$W/few_s1.step_$step.json"
done
python benchmarks/summarize_claims.py "$W" > "$R/claims.json"

# Export, runtime and INT8 figures on the final model.
python benchmarks/bench_export.py "$W/full_s2/best.pt" --data "$D" --json "$R/export.json"
dis-export "$W/full_s2/best.pt" --iters 3 --outputs labels,tags -o "$W/model.onnx" --force
python benchmarks/bench_int8.py "$W/model.onnx" --data "$D" --json "$R/int8.json"
python benchmarks/bench_runtime.py "$W/model.onnx" --frames 300 --soak 10000 --json "$R/runtime.json"
python benchmarks/bench_refine_cost.py --json "$R/refine_cost.json"
python benchmarks/bench_stats_memory.py --json "$R/stats_memory.json"
# C++ runtime against the Python runtime (needs a build of runtime/cpp; see README "Embedding (C++, C ABI)").
if [ -x build/cpp/dis_run_cpp ]; then
  python benchmarks/bench_cpp.py "$W/model.onnx" --build build/cpp --json "$R/cpp.json"
fi
