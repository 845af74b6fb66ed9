#!/usr/bin/env bash
# Budget (b) on one GPU, in one go: the paper's hardware configuration (EfficientNetV2-M, batch 128 of 64x64
# patches, AMP) trained with the default recipe's measured settings for a fixed number of GPU seconds, plus the
# GPU speed benchmark, with every figure scored the way the CPU figures are (bundle/docs/benchmarks.md).
#
#   bash scripts/gpu_paper_budget.sh VOLUME REAL_SERIES OUTPUT_DIR [TRAIN_SECONDS]
#
#   VOLUME         full-dose NIfTI volume in HU (the docs use the Mayo L067 3 mm volume)
#   REAL_SERIES    real low-dose DICOM series scored without reference (the docs use L109 quarter dose)
#   OUTPUT_DIR     a new or empty folder; gets data/ (the z-block split), speed*.json/.md, run/ (the bundle run),
#                  training.log, score_{test,validation}.json (the network alone) and
#                  score_{test,validation}_self_ensemble_2.json (inference.json's default)
#   TRAIN_SECONDS  seconds of training iterations (default 240); the iteration count follows from the measured
#                  step time: 10 epochs, the first half L1 only, the last 20 % on whole slices
#
# Steps: (1) the documented split with its calibrated simulated quarter dose, simulated on the CPU so the pairs
# equal those of the CPU runs (prepare_volume.py --training-realisations 4 --seed 0); (2) benchmark_speed.py on
# the GPU (whole 512x512 slices: eager, channels_last, float16 autocast, torch.compile for the B0; the paper's
# training step); (3) training through `python -m monai.bundle run training`; (4) score_model.py on the test and
# validation blocks and on REAL_SERIES. Environment overrides for a smoke run on a CPU: BACKBONE, BATCH, DEVICE,
# SPEED_ARGS (e.g. "--quick"), COMPILE_TIMEOUT (seconds), WORKERS, LEARNING_RATE.
set -euo pipefail
if [[ $# -lt 3 || $1 == -h || $1 == --help ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
fi
# the paths as given, from the caller's folder; the steps run from the repository root
volume=$(realpath -m "$1") real_series=$(realpath -m "$2") out=$(realpath -m "$3") train_seconds=${4:-240}
backbone=${BACKBONE:-efficientnetv2_m} batch=${BATCH:-128} device=${DEVICE:-cuda} workers=${WORKERS:-8}
learning_rate=${LEARNING_RATE:-0.0003}
for input in "$volume" "$real_series"; do
    [[ -e $input ]] || { echo "error: $input does not exist" >&2; exit 2; }
done
[[ $train_seconds =~ ^[1-9][0-9]*$ ]] || { echo "error: TRAIN_SECONDS '$train_seconds' is not a positive integer" >&2; exit 2; }
if [[ -e $out && -n $(ls -A "$out" 2>/dev/null) ]]; then
    echo "error: $out is not empty; give a new folder (nothing is overwritten)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }

stamp "1/4 split and simulated quarter dose"
python scripts/prepare_volume.py "$volume" "$out/data" --training-realisations 4 --seed 0 --device cpu

stamp "2/4 speed"
# shellcheck disable=SC2086  # SPEED_ARGS is a list of options
python scripts/benchmark_speed.py --device "$device" --variants eager_fp32 channels_last autocast \
    --batch-sizes 1 8 32 --train-backbone "$backbone" --train-batch-size "$batch" ${SPEED_ARGS:-} \
    --output "$out/speed.json" --markdown "$out/speed.md" ||
    stamp "speed benchmark failed; training goes on with an assumed step time"
python scripts/benchmark_speed.py --device "$device" --models ours_tf_efficientnetv2_b0 --variants compile \
    --batch-sizes 1 8 32 --compile-timeout "${COMPILE_TIMEOUT:-150}" --skip-training ${SPEED_ARGS:-} --output "$out/speed_compile.json" ||
    stamp "torch.compile benchmark failed"

# The measured step has n_critic 5 and the VGG term; the recipe's (n_critic 1, no VGG, L1 alone for the first
# half) costs at most half of it, so half the measured time is a safe estimate.
epoch_length=$(python - "$out/speed.json" "$train_seconds" <<'EOF'
import json, sys
from pathlib import Path

report, seconds = Path(sys.argv[1]), float(sys.argv[2])
steps = json.loads(report.read_text())["training"] if report.exists() else []
measured = [s["seconds_per_iteration"] for s in steps if s.get("status") == "ok" and s.get("amp")]
step = 0.5 * measured[0] if measured else 0.2
print(max(5, int(seconds / step / 10)))
EOF
)
iterations=$((10 * epoch_length))
stamp "3/4 training: $iterations iterations ($epoch_length per epoch) of $backbone, batch $batch"
python -m monai.bundle run training --config_file bundle/configs/train.json --logging_file bundle/configs/logging.conf \
    --bundle_root "$out/run" --datalist "$out/data/datalist.json" --seed 0 --from_scratch true \
    --backbone "$backbone" --batch_size "$batch" --patch_size 64 --epoch_length "$epoch_length" --max_epochs 10 \
    --val_interval 1 --learning_rate "$learning_rate" --adversarial_warmup $((iterations / 2)) --n_critic 1 \
    --lambda_perceptual 0 --perceptual_pretrained false --num_workers "$workers" --amp true \
    --whole_slice_fraction 0.2 2>&1 | tee "$out/training.log"

stamp "4/4 scores"
python scripts/score_model.py --model "$out/run/models/model.pt" --device "$device" --datalist "$out/data/datalist.json" \
    --split test --real-low-dose "$real_series" --real-slices 16 --json "$out/score_test.json" >/dev/null
python scripts/score_model.py --model "$out/run/models/model.pt" --device "$device" --datalist "$out/data/datalist.json" \
    --split validation --json "$out/score_validation.json" >/dev/null
for split in test validation; do  # as inference.json runs it: the mean over two flipped views
    python scripts/score_model.py --model "$out/run/models/model.pt" --device "$device" --self-ensemble 2 \
        --datalist "$out/data/datalist.json" --split "$split" --json "$out/score_${split}_self_ensemble_2.json" >/dev/null
done
stamp "done: $out"
