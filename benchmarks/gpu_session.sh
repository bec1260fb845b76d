#!/usr/bin/env bash
# The ONE script to run on a lent GPU machine (its minutes are scarce): everything CI cannot check.
#   1. the GPU and the versions in use
#   2. the gpu-marked tests (the cuda device against the numpy reference)
#   3. the NVRTC resource table (registers, shared memory, spills) for the usual archs and this GPU's
#   4. the benchmarks (python -m minunet.bench: every kernel version, PyTorch beside it, a training step)
#   5. the default GPU training run of python -m minunet.train, cut to 500 steps / 5 minutes
# Every step runs even if an earlier one failed; the exit status says whether any failed.
# Results go to ${OUT:-benchmarks/results}. Run from the repository root:
#   bash benchmarks/gpu_session.sh                 # all of it: about 10-12 minutes (estimated, never run)
#   bash benchmarks/gpu_session.sh check bench     # 1-4: fits one 10-minute call of a lent machine ...
#   bash benchmarks/gpu_session.sh train           # ... and 5 in a second call
set -euo pipefail

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
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()

# step NAME COMMAND...: run it, show and keep its output in $OUT/NAME.txt, remember a failure and go on.
step() {
    local name="$1"
    shift
    echo "=== $name: $*" | tee "$OUT/$name.txt"
    local start=$SECONDS
    if "$@" 2>&1 | tee -a "$OUT/$name.txt"; then
        echo "=== $name: ok ($((SECONDS - start)) s)" | tee -a "$OUT/$name.txt"
    else
        echo "=== $name: FAILED ($((SECONDS - start)) s)" | tee -a "$OUT/$name.txt"
        failed+=("$name")
    fi
}

step gpu nvidia-smi
if wanted check; then
    step versions python3 -c "import sys, numpy, cupy; print(sys.version); print('numpy', numpy.__version__); \
    print('cupy', cupy.__version__); print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion()); \
    print('gpu', cupy.cuda.Device().compute_capability, cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"

    step pytest_gpu python3 -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml "$OUT/pytest_gpu.xml"

    # The usual archs plus the one of this GPU (e.g. compute_cap 9.0 -> sm_90), without duplicates.
    archs="sm_75 sm_80 sm_86 sm_90"
    cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)"
    if [[ "$cap" =~ ^[0-9]+$ ]] && [[ " $archs " != *" sm_$cap "* ]]; then
        archs="$archs sm_$cap"
    fi
    # shellcheck disable=SC2086  # archs is a word list on purpose
    step nvrtc_table python3 -m minunet.nvrtc --arch $archs
fi

# Every kernel version on the paper's U-Net layers, PyTorch/cuDNN beside them, one training step end to end:
# writes results-cuda-<date>.md/.json and roofline-cuda-<date>.png into $OUT (about 3-4 minutes on an H100).
if wanted bench; then
    step bench python3 -m minunet.bench --device cuda --out "$OUT" --plot
fi

# The default GPU training run (the paper's network and recipe), cut to a few minutes: its metrics.jsonl holds
# the time and loss of every step and the validation IoU every 100 steps (issue 3 asks for both).
if wanted train; then
    step train timeout 300 python3 -m minunet.train --device cuda --steps 500 --out "$OUT/train-cuda" --quiet
fi

if ((${#failed[@]})); then
    echo "FAILED steps: ${failed[*]} (logs in $OUT)"
    exit 1
fi
echo "all steps ok (logs in $OUT)"
