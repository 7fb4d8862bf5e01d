#!/usr/bin/env bash
# The prepared GPU check: on a CUDA machine, one command runs the CUDA-only tests and the two
# GPU benchmarks and writes one Markdown report. Every step has a time limit taken from one
# budget (default 480 s, so the whole check ends within 8 minutes); a failing or timed-out
# step is recorded and the check goes on. Without CUDA it says so, writes a report saying so,
# and exits 0. Exit status otherwise: 0 when every step passed, 1 when one failed.
#
#   scripts/gpu_check.sh [--dry-run] [--python PATH] [--report FILE] [--budget SECONDS]
#
#   --dry-run        write the report with the plan (every step and its command), run nothing
#   --python PATH    use this interpreter as it is (no set-up); default: .venv/bin/python,
#                    made first by the README set-up if .venv is missing
#   --report FILE    where the report goes (default: $OUT/gpu_report.md if OUT is set, else
#                    gpu_report.md in the current folder)
#   --budget SECONDS the time for the whole check (default 480)
#
# Steps: GPU summary (nvidia-smi); Python set-up if needed; torch/triton/CUDA versions; the
# CUDA-only tests (tests/kernels, every test file that asks torch.cuda.is_available(), and the
# upscaler and SR tests, which run on the GPU in fp16/bf16 when one is there; the kernel
# tests' CUDA cases once more on the compiled kernel, TRITON_INTERPRET=0); then
# benchmarks/attention.py (full table; the --quick table if the full one fails) and
# benchmarks/txt2img_overhead.py on CUDA; the GPU summary again (clocks and power after load).

set -u -o pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

DRY=0
PY=""
REPORT=""
BUDGET=480
while (($#)); do
    case $1 in
        --dry-run) DRY=1 ;;
        --python) PY=${2:?--python needs a path}; shift ;;
        --report) REPORT=${2:?--report needs a file}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget must be a whole number of seconds" >&2; exit 2; }

if [[ -z $REPORT ]]; then
    if [[ -n ${OUT:-} ]]; then REPORT=$OUT/gpu_report.md; else REPORT=$PWD/gpu_report.md; fi
fi
mkdir -p "$(dirname "$REPORT")" && : >"$REPORT" || { echo "gpu_check: cannot write $REPORT" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

DEADLINE=$((SECONDS + BUDGET))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RESERVE=5     # seconds kept for finishing the report
TAIL=60       # output lines of each step kept in the report
FAILED=0
LAST=ok
SUMMARY=()

say() { echo "[gpu_check] $*" >&2; }
put() { printf '%s\n' "$@" >>"$REPORT"; }

# step NAME MAX_SECONDS COMMAND...: run COMMAND under `timeout` (at most MAX_SECONDS, less when
# the budget is nearly spent), record its command, result, time and output tail. Sets LAST to
# ok, failed or skipped (and returns non-zero unless ok).
step() {
    local name=$1 max=$2
    shift 2
    local left=$((DEADLINE - SECONDS - RESERVE))
    local limit=$((max < left ? max : left))
    put "## $name" "" '```' "\$ $*" '```' ""
    if ((DRY)); then
        put "not run (dry run; at most $max s)" ""
        SUMMARY+=("| $name | dry run | - |")
        LAST=ok
        return 0
    fi
    if ((limit < 5)); then
        put "**skipped**: the ${BUDGET} s budget is spent" ""
        SUMMARY+=("| $name | skipped (no time left) | - |")
        say "$name: skipped, no time left"
        FAILED=1
        LAST=skipped
        return 1
    fi
    say "$name (at most $limit s) ..."
    local log began rc result took
    log=$WORK/step.log
    began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    took=$((SECONDS - began))
    if ((rc == 0)); then
        result="ok"
    elif ((rc == 124 || rc == 137)); then
        result="**timed out** (limit $limit s)"
    else
        result="**failed** (exit $rc)"
    fi
    put "result: $result, $took s" "" '```'
    tail -n "$TAIL" "$log" | sed '$a\' >>"$REPORT"
    put '```' ""
    local line  # pytest's last summary line, if this was pytest
    line=$(grep -E '^=*\s*[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | xargs)
    SUMMARY+=("| $name | $result${line:+: $line} | $took s |")
    say "$name: $result${line:+ ($line)}, $took s"
    if ((rc == 0)); then LAST=ok; else LAST=failed; FAILED=1; fi
    return $rc
}

finish() {
    put "## Summary" "" "| step | result | time |" "| --- | --- | --- |" "${SUMMARY[@]}" ""
    put "whole check: $((SECONDS - DEADLINE + BUDGET)) s of a $BUDGET s budget"
    say "report: $REPORT"
    exit $(( DRY ? 0 : FAILED ))
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git status --porcelain 2>/dev/null) ]] && commit="$commit (with uncommitted changes)"
put "# graphflow GPU check" "" \
    "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    "- host: $(uname -n), $(uname -m), $(nproc 2>/dev/null || echo '?') CPU cores" \
    "- commit: $commit" \
    "- mode: $( ((DRY)) && echo 'dry run (nothing is run)' || echo run), budget $BUDGET s" ""

HAVE_CUDA=0
if command -v nvidia-smi >/dev/null 2>&1 && timeout 20 nvidia-smi -L >/dev/null 2>&1; then
    HAVE_CUDA=1
fi
if ((!HAVE_CUDA && !DRY)); then
    put "**no CUDA**: no NVIDIA driver answers here (nvidia-smi is missing or sees no GPU)," \
        "so nothing was run. Run this on a machine with an NVIDIA GPU." ""
    say "no CUDA here (nvidia-smi is missing or sees no GPU): nothing to check; report: $REPORT"
    exit 0
fi
((DRY)) && put "CUDA on this machine: $( ((HAVE_CUDA)) && echo yes || echo 'no (the plan is the same)')" ""

GPU_QUERY=name,driver_version,memory.total,memory.used,temperature.gpu,power.draw,clocks.sm,clocks.mem
step "GPU" 20 nvidia-smi --query-gpu=$GPU_QUERY --format=csv

# -- Python: as given, the project's .venv, or the README set-up ------------------------------
if [[ -z $PY ]]; then
    PY=$ROOT/.venv/bin/python
    if [[ ! -x $PY ]]; then
        made_here=0
        [[ -e .venv ]] || made_here=1
        step "set-up (README)" 300 bash -c "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
        if [[ $LAST != ok ]]; then
            # a half-made environment would be taken for a good one next time
            ((made_here)) && rm -rf .venv
            PY=python3
            put "the set-up failed: the steps below use python3 from PATH as it is" ""
        fi
    fi
fi

read -r -d '' VERSIONS <<'EOF'
import platform, sys
print("python", platform.python_version(), sys.executable)
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor},"
          f" {p.multi_processor_count} SMs, bf16: {torch.cuda.is_bf16_supported()}")
for name in ("triton", "diffusers", "transformers", "graphflow"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as error:
        print(name, "not importable:", type(error).__name__, error)
EOF
VERSIONS_PY=$WORK/versions.py
printf '%s\n' "$VERSIONS" >"$VERSIONS_PY"
step "versions" 60 "$PY" "$VERSIONS_PY"

# -- the CUDA-only tests ----------------------------------------------------------------------
mapfile -t CUDA_TESTS < <(
    {
        echo tests/kernels
        echo tests/image/test_upscale.py
        echo tests/image/test_sr_model.py
        grep -rlE 'cuda\.is_available' tests --include='test_*.py' | grep -v '^tests/kernels/'
    } | awk '!seen[$0]++' | while read -r path; do [[ -e $path ]] && echo "$path"; done
)
step "CUDA tests" 170 env PYTHONUNBUFFERED=1 "$PY" -m pytest -q -rfEs -p no:cacheprovider "${CUDA_TESTS[@]}"
# The kernel tests above run Triton's interpreter (tests/kernels/conftest.py); the CUDA ones
# again on the compiled kernel:
step "compiled kernel tests" 90 env TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 "$PY" -m pytest -q -rfEs \
    -p no:cacheprovider tests/kernels -m "not triton_interpret"

# -- benchmarks on CUDA -----------------------------------------------------------------------
step "attention benchmark" 150 env PYTHONUNBUFFERED=1 "$PY" benchmarks/attention.py
if [[ $LAST == failed ]]; then
    step "attention benchmark (quick)" 60 env PYTHONUNBUFFERED=1 "$PY" benchmarks/attention.py --quick
fi
step "txt2img overhead" 120 env GRAPHFLOW_DEVICE=cuda PYTHONUNBUFFERED=1 "$PY" benchmarks/txt2img_overhead.py --rounds 5
step "GPU after load" 20 nvidia-smi --query-gpu=$GPU_QUERY --format=csv
finish
