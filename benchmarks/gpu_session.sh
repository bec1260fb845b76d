#!/usr/bin/env bash
# The ONE script to run on a lent GPU machine (its minutes are scarce): everything CI cannot check.
# Every step runs even if an earlier one failed; the exit status says whether any failed. Results go to
# ${OUT:-benchmarks/results}. Run from anywhere; the parts, run in this order:
#
#   gpu    (with check) nvidia-smi, Python/NumPy/CuPy/CUDA versions, the GPU's name and compute capability
#   check  the gpu-marked tests (every kernel on cuda against the numpy reference) with MINUNET_POISON=1, so
#          every output starts as NaN and an element a kernel never writes fails; FAILED unless every
#          collected gpu test ran and passed (without a usable GPU pytest skips them all and exits 0);
#          then the NVRTC resource table (registers, shared memory, spills) for the usual archs and this GPU's
#   bench  python -m minunet.bench --device cuda --plot: every kernel version and PyTorch on the paper's
#          layers, each checked against the float64 reference before it is timed (FAILED if one is wrong), a
#          training step; the report is written before the chart is drawn
#   train  the default GPU training run (the paper's network and recipe) cut to TRAIN_STEPS steps; metrics.jsonl
#          gets every step's loss and time as it goes, so a run cut at TRAIN_LIMIT_S still leaves its
#          numbers, summarised at the end (steps done, loss, median step time, validation IoU)
#
# Time per part. "measured" = its CPU side on a 2-core machine without a GPU, shared by 7 engineers (load
# 3-14); "estimated" = never run on a GPU:
#   gpu    ~10 s (estimated)
#   check  ~1 min (estimated: 101 small tests, each kernel file compiled for float32 and float64); its CPU side,
#          collecting the tests: 3 s (measured; the whole part without a GPU: 9 s). Cut at 180 s. Then the
#          NVRTC table, 23 s (measured: CPU only, the same there; cut at 90 s).
#   bench  ~2-2.5 min (estimated), cut at 175 s; its kernel tables are written before the training step. Counted
#          (the bench prints it): 438 kernel timings; one launch of each is 6.2 TFLOP. Timed launches: 45 s in all
#          (minunet.bench.gpu.TIMING_BUDGET_S, ~0.1 s each; was up to 0.2 s each, 88 s); 2 warm-ups and a check
#          each: 3 x 6.2 TFLOP, ~5-20 s at 1-4 TFLOP/s; the checks against a float64 reference computed on the CPU
#          (94 s on the 2 cores here, ~10-20 s on a lent machine's 16) and ~2.5 G output elements compared,
#          ~20-30 s; a training step of minunet and PyTorch, ~20 s; NVRTC compiling 14 modules, ~20 s.
#   train  ~1-2 min for 300 steps (estimated). Per step: the data path, 0.1 s of CPU time (measured:
#          python benchmarks/train_cpu_side.py; wall 0.13-0.38 s here at load 3-14, a lent machine runs
#          nothing else) + the GPU's step (0.05-0.2 s, estimated: 870 GFLOP at 5-20 TFLOP/s); setup 3-12 s
#          and one checkpoint 1-3 s (measured); 3 validations. Cut at 145 s.
#
# On a lent machine (about 15 minutes in all, machine start included, at most 8 files back from $OUT), two
# commands of at most 6 minutes each even when every cut is reached, the first giving the answer that
# matters most, every kernel correct on the GPU, even if the second never runs:
#   bash benchmarks/gpu_session.sh check          # ~1.5 min (estimated; at most 5 if every step is cut)
#   bash benchmarks/gpu_session.sh bench train    # ~3.5-4.5 min (estimated; at most 5.9 if every step is cut)
# Files: check writes 3 into $OUT, bench train 7 (train's run folder stays in a scratch folder).
#
# Smaller runs: BENCH_ARGS and TRAIN_ARGS are added to the bench's and train's command lines (e.g.
# BENCH_ARGS="--quick --unet tile=44,depth=2,base=4" TRAIN_ARGS="--depth 2 --base-channels 4 --tile 44");
# NVRTC_ARCHS replaces the NVRTC table's usual archs (e.g. "sm_90"); CUT_FACTOR=K multiplies every cut-off by K
# (a slow machine: the stand-in's dry run on CI's 2 shared cores).
# Under the tests' CuPy stand-in (tests/cupy_standin first on PYTHONPATH: CI's dry run, tests/test_cuda_standin.py)
# the same steps run on the CPU simulator: every file written starts with the stand-in's note, nvidia-smi is not
# asked, and $OUT may not be benchmarks/results, where results-cuda-* files are a GPU's evidence.
set -euo pipefail

TRAIN_STEPS="${TRAIN_STEPS:-300}"
TRAIN_LIMIT_S="${TRAIN_LIMIT_S:-145}"
CUT_FACTOR="${CUT_FACTOR:-1}"
cut() { echo $(($1 * CUT_FACTOR)); }  # a cut-off in seconds, times CUT_FACTOR
read -ra BENCH_ARGS <<< "${BENCH_ARGS:-}"
read -ra TRAIN_ARGS <<< "${TRAIN_ARGS:-}"

parts=("$@")
if ((${#parts[@]} == 0)); then
    parts=(check bench train)
fi
for part in "${parts[@]}"; do
    case "$part" in
    check | bench | train) ;;
    *)
        echo "gpu_session.sh: unknown part '$part'; the parts are: check bench train (default: all three)" >&2
        exit 2
        ;;
    esac
done
wanted() { [[ " ${parts[*]} " == *" $1 "* ]]; }

cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
STANDIN="$(python3 -c 'import cupy; print(getattr(cupy, "__minunet_standin__", ""))' 2> /dev/null || true)"
if [[ -n "$STANDIN" ]] && [[ "$(realpath -m "$OUT")" == "$(realpath -m benchmarks/results)" ]]; then
    echo "gpu_session.sh: $STANDIN: results-cuda-* files in benchmarks/results are a GPU's;" \
        "set OUT to another folder" >&2
    exit 2
fi
mkdir -p "$OUT"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 # a step cut at its time limit keeps everything it printed
failed=()

# The first line of a file written under the stand-in: its note.
note_first() { if [[ -n "$STANDIN" ]]; then echo "$STANDIN"; fi; }

# step NAME COMMAND...: run it, show and keep its output in $OUT/NAME.txt, remember a failure and go on.
step() {
    local name="$1"
    shift
    { note_first; echo "=== $name: $*"; } | tee "$OUT/$name.txt"
    local start=$SECONDS
    if "$@" 2>&1 | tee -a "$OUT/$name.txt"; then
        echo "=== $name: ok ($((SECONDS - start)) s)" | tee -a "$OUT/$name.txt"
    else
        echo "=== $name: FAILED ($((SECONDS - start)) s)" | tee -a "$OUT/$name.txt"
        failed+=("$name")
    fi
}

gpu_info() {
    local rc=0
    if [[ -n "$STANDIN" ]]; then
        echo "nvidia-smi: not run, no GPU ($STANDIN)"
    else
        nvidia-smi || rc=1
    fi
    python3 -c "import sys, numpy, cupy; print(sys.version); print('numpy', numpy.__version__); \
print('cupy', cupy.__version__); print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion()); \
print('gpu', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode(), 'compute capability', \
cupy.cuda.Device().compute_capability)" || rc=1
    return $rc
}

gpu_tests() {
    local rc=0
    MINUNET_POISON=1 timeout -k 10 "$(cut 180)" python3 -m pytest -m gpu -q -rs -p no:cacheprovider \
        --junitxml "$SCRATCH/pytest_gpu.xml" || rc=1
    python3 benchmarks/session_report.py gpu-tests "$SCRATCH/pytest_gpu.xml" || rc=1
    return $rc
}

nvrtc_table() {
    # The usual archs plus the one of this GPU (e.g. compute_cap 9.0 -> sm_90), without duplicates.
    local archs="${NVRTC_ARCHS:-sm_75 sm_80 sm_86 sm_90}" cap
    cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)"
    if [[ "$cap" =~ ^[0-9]+$ ]] && [[ " $archs " != *" sm_$cap "* ]]; then
        archs="$archs sm_$cap"
    fi
    # NVRTC needs no GPU: under the stand-in the real CuPy compiles (the stand-in's folder left off the path).
    local path="$PYTHONPATH" standin_dir entry kept=()
    if [[ -n "$STANDIN" ]]; then
        standin_dir="$(python3 -c 'import cupy, pathlib; print(pathlib.Path(cupy.__file__).resolve().parents[1])')"
        IFS=: read -ra entries <<< "$PYTHONPATH"
        for entry in "${entries[@]}"; do
            [[ "$(realpath -m "$entry")" == "$standin_dir" ]] || kept+=("$entry")
        done
        path="$(IFS=:; echo "${kept[*]}")"
    fi
    # shellcheck disable=SC2086  # archs is a word list on purpose
    PYTHONPATH="$path" timeout -k 10 "$(cut 90)" python3 -m minunet.nvrtc --arch $archs
}

train() {
    local rc=0
    # SIGINT at the limit: train saves a checkpoint and its plots and stops; timeout exits 124 (FAILED, and the
    # summary says "cut short"); SIGKILL 15 s later if it hangs. metrics.jsonl has every step either way.
    # The run folder stays in $SCRATCH: only its metrics and loss curve come back (a lent machine returns
    # 8 files, and the checkpoint is too large to return anyway).
    timeout -s INT -k 15 "$(cut "$TRAIN_LIMIT_S")" python3 -m minunet.train --device cuda --steps "$TRAIN_STEPS" \
        --checkpoint-every "$TRAIN_STEPS" --out "$SCRATCH/train-cuda" --quiet "${TRAIN_ARGS[@]}" || rc=1
    # Under the stand-in, train itself writes its note first in metrics.jsonl and atop loss.png.
    cp "$SCRATCH/train-cuda/metrics.jsonl" "$OUT/train-cuda-metrics.jsonl" 2>/dev/null || true
    cp "$SCRATCH/train-cuda/loss.png" "$OUT/train-cuda-loss.png" 2>/dev/null || true
    python3 benchmarks/session_report.py train "$OUT/train-cuda-metrics.jsonl" "$TRAIN_STEPS" || rc=1
    return $rc
}

if wanted check; then
    step gpu gpu_info  # once, in the first command (the bench's JSON also names the GPU and the versions)
    step check gpu_tests
    step nvrtc_table nvrtc_table
fi
if wanted bench; then
    step bench timeout -k 10 "$(cut 175)" python3 -m minunet.bench --device cuda --out "$OUT" --plot "${BENCH_ARGS[@]}"
fi
if wanted train; then
    step train train
fi

if ((${#failed[@]})); then
    echo "FAILED steps: ${failed[*]} (logs in $OUT)"
    exit 1
fi
echo "all steps ok (logs in $OUT)"
