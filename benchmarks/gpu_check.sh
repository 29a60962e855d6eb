#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: install what the GPU code needs, run the GPU
# tests, run benchmarks/bench_gpu.py, and write what came out, with the date and the GPU's name.
#
#     bash benchmarks/gpu_check.sh [--dry-run] [--full] [OUTDIR]
#
# OUTDIR: where the results go; default $OUT if set, else benchmarks/_scratch/gpu_check. It
# receives at most 7 files, all plain names: summary.md (date, GPU, versions, each step's
# status, the tests' summary line, what was skipped and why), environment.txt (nvidia-smi,
# nvcc, the Python packages, `cnnlite info`), install.log, pytest.log, pytest-junit.xml,
# bench_gpu.log and results_gpu.md (also left at benchmarks/results_gpu.md).
#
# Steps, each under its own `timeout`; a step that fails or runs out of time is recorded and
# the next one still runs (only "no GPU" stops the script at once):
#   1. GPU        nvidia-smi: the GPU's name, the driver and the CUDA version it supports.
#   2. install    cupy (the extra of setup.py that matches the driver: cuda12 or cuda13; none
#                 when cupy is already importable), cnnlite's dependencies, and on a networked
#                 machine a CUDA build of PyTorch when the installed torch has no CUDA.
#   3. info       the versions in use and `python -m cnnlite info`.
#   4. tests      pytest on the GPU tests (tests/test_cuda_*.py and the tests of the other files
#                 named for cuda/gpu; the GPU ones skip themselves without a GPU, and a skip
#                 that says "no GPU" counts as a failure here).
#   5. bench      benchmarks/bench_gpu.py --quick (with --full, the whole benchmark).
# All of it fits in CNNLITE_GPU_CHECK_BUDGET seconds (default 470, under 8 minutes; 1200 with
# --full, which does not fit a 10-minute limit). A step that would start
# too late is skipped. Exit status: 0 every step passed, 1 a step failed or timed out, 2 none
# failed but one was skipped (for instance the benchmark, without a CUDA build of PyTorch).
#
# Where packages come from:
#   - From wheels in a folder, offline, when CNNLITE_WHEELS (default .whl/ in the repository)
#     holds any: `pip install --no-index --find-links`. This is for a GPU machine that cannot
#     reach a package index. Fill the folder beforehand on a networked machine with
#     benchmarks/gpu_wheels.sh, which downloads what such a machine lacks.
#   - Otherwise from the package index: `pip install -e '.[cuda12]'` (or cuda13).
#
# On a GPU machine without network (the project's test machine is an H200 node with Python 3.12,
# torch 2.11 built for CUDA 13, cupy-cuda13x, numba, numpy, pytest and the rest of cnnlite's
# dependencies but tbb; nvcc 13): once, on a networked machine, in the repository:
#     bash benchmarks/gpu_wheels.sh        # tbb + tcmlib into .whl/ (9.2 MiB)
# then copy the repository with .whl/ to the GPU machine and run there, within 9 minutes:
#     bash benchmarks/gpu_check.sh
# and copy results_gpu.md from OUTDIR back to benchmarks/results_gpu.md.
#
# Environment: PYTHON (default python3), CNNLITE_WHEELS, CNNLITE_GPU_CHECK_BUDGET,
# CNNLITE_INSTALL_TORCH=0 (never install PyTorch), CNNLITE_PYTEST_ARGS (more pytest arguments).

set -uo pipefail  # no -e: a failed step is recorded and the script goes on

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

DRY_RUN=0
FULL=0
OUTDIR=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --full) FULL=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $arg (try --help)" >&2; exit 64 ;;
        *) [ -z "$OUTDIR" ] || { echo "gpu_check.sh: one OUTDIR only" >&2; exit 64; }
           OUTDIR="$arg" ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${OUTDIR:-${OUT:-$ROOT/benchmarks/_scratch/gpu_check}}"
case "$OUTDIR" in /*) ;; *) OUTDIR="$PWD/$OUTDIR" ;; esac
cd "$ROOT" || exit 1

PY="${PYTHON:-python3}"
WHEELS="${CNNLITE_WHEELS:-$ROOT/.whl}"
BUDGET="${CNNLITE_GPU_CHECK_BUDGET:-$([ "$FULL" = 1 ] && echo 1200 || echo 470)}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # cnnlite from this checkout, installed or not
export MPLBACKEND=Agg                                 # no display
export CI=true                                        # the quick hypothesis profile, as in CI
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Per-step caps (seconds). On the device the steps before the tests take about 40 s (two
# probes of the Python packages, an offline pip install, cnnlite info), the tests about 2.5 min
# (an estimate: no GPU has run them yet) and bench_gpu.py --quick about a minute. Each step
# also leaves KEEP_* seconds of the budget to the ones after it, so that a slow early step
# shortens the tests, not the benchmark.
CAP_GPU=20
CAP_PROBE=60
CAP_INSTALL=60          # from local wheels; from the package index: 300 (cupy, maybe torch)
CAP_INFO=45
CAP_TESTS=240
CAP_BENCH=150
[ "$FULL" = 1 ] && CAP_BENCH=900
KEEP_FOR_TESTS_AND_BENCH=270
KEEP_FOR_BENCH=90
[ "$FULL" = 1 ] && KEEP_FOR_BENCH=300

if [ "$DRY_RUN" = 0 ]; then
    mkdir -p "$OUTDIR" || { echo "gpu_check.sh: cannot create $OUTDIR" >&2; exit 1; }
    for f in summary.md environment.txt install.log pytest.log pytest-junit.xml bench_gpu.log \
             results_gpu.md; do
        rm -f "$OUTDIR/$f"
    done
fi
ENV_LOG="$OUTDIR/environment.txt"
INSTALL_LOG="$OUTDIR/install.log"
PYTEST_LOG="$OUTDIR/pytest.log"
BENCH_LOG="$OUTDIR/bench_gpu.log"
[ "$DRY_RUN" = 1 ] && ENV_LOG=/dev/null INSTALL_LOG=/dev/null PYTEST_LOG=/dev/null \
    BENCH_LOG=/dev/null

PROBE=""      # key=value lines from PROBE_PY
STEPS=()      # "name|STATUS|note"; STATUS: PASSED, WARN, FAILED, TIMEOUT, SKIPPED, PLANNED
SKIPPED=()    # what was not run or not compared, and why
TESTS_LINE="(not run)"

header() {
    local now=$(($(date +%s) - START))
    printf '\n==== %s  [t+%ds of %ds] ====\n' "$*" "$now" "$BUDGET"
}
record() { STEPS+=("$1|$2|$3"); printf -- '---- %s: %s%s\n' "$1" "$2" "${3:+ ($3)}"; }

# seconds_for CAP [KEEP]: the timeout a command gets: CAP, or what is left of the budget less 10 s
# (to write the summary) and less KEEP seconds kept for the steps after it; 0 when too little is
# left to start it.
seconds_for() {
    local left=$((DEADLINE - $(date +%s) - 10 - ${2:-0}))
    local t=$(($1 < left ? $1 : left))
    [ "$t" -ge 5 ] && echo "$t" || echo 0
}

# run_logged SECONDS LOG CMD...: CMD under `timeout`, its output shown and appended to LOG;
# returns CMD's status (124 when it ran out of time).
run_logged() {
    local t=$1 log=$2
    shift 2
    { printf '$'; printf ' %q' "$@"; printf '   (timeout %ss)\n' "$t"; } | tee -a "$log"
    [ "$DRY_RUN" = 1 ] && return 0
    timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 137 ] && rc=124
    return "$rc"
}

# What the GPU steps depend on, as key=value lines; each import on its own, so that one broken
# package does not hide the others.
PROBE_PY='
import importlib, platform, sys
from importlib import metadata
print(f"python={platform.python_version()} ({sys.executable})")
def version(name):
    try:
        module = importlib.import_module(name)
        return getattr(module, "__version__", "?"), module
    except Exception as error:
        return f"missing ({type(error).__name__}: {error})".replace("\n", " "), None
def distribution(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"
for name in ("numpy", "numba"):
    print(f"{name}={version(name)[0]}")
for name in ("tbb", "pytest", "pytest-timeout", "cupy-cuda12x", "cupy-cuda13x"):
    print(f"{name}={distribution(name)}")
v, cupy = version("cupy")
print(f"cupy={v}")
if cupy is not None:
    try:
        print(f"cupy_devices={cupy.cuda.runtime.getDeviceCount()}")
        print(f"cupy_cuda_runtime={cupy.cuda.runtime.runtimeGetVersion()}")
    except Exception as error:
        print(f"cupy_devices=0 ({type(error).__name__}: {error})".replace("\n", " "))
v, torch = version("torch")
print(f"torch={v}")
if torch is not None:
    print(f"torch_cuda_build={torch.version.cuda}")
    try:
        ok = torch.cuda.is_available()
        print(f"torch_cuda_available={int(ok)}")
        if ok:
            print(f"torch_gpu={torch.cuda.get_device_name(0)}")
            print(f"cudnn={torch.backends.cudnn.version()}")
    except Exception as error:
        print(f"torch_cuda_available=0 ({type(error).__name__}: {error})".replace("\n", " "))
'
probe() {
    local t
    t=$(seconds_for $CAP_PROBE $KEEP_FOR_TESTS_AND_BENCH)
    [ "$t" = 0 ] && return 0
    PROBE=$(timeout -k 5 "$t" "$PY" -c "$PROBE_PY" 2>&1)
}

indent() { sed 's/^/  /'; }

probe_value() { sed -n "s/^$1=//p" <<<"$PROBE" | head -1; }

write_summary() {
    [ "$DRY_RUN" = 1 ] && return 0
    local s="$OUTDIR/summary.md" entry name status note item
    {
        echo "# cnnlite GPU check"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "- GPU: ${GPU_NAME:-unknown} (driver ${DRIVER:-?}, CUDA ${CUDA_VERSION:-?} per nvidia-smi)"
        echo "- host: $(uname -srm), $(nproc 2>/dev/null || echo '?') CPU cores"
        echo "- packages from: ${SOURCE:-not installed}"
        if [ -n "$PROBE" ]; then
            echo "- python: $(probe_value python)"
            echo "- cupy $(probe_value cupy), torch $(probe_value torch) (CUDA build $(probe_value torch_cuda_build)), numpy $(probe_value numpy), numba $(probe_value numba), tbb $(probe_value tbb)"
        fi
        echo "- run: $(($(date +%s) - START)) s of a ${BUDGET} s budget"
        echo
        echo "| step | status | note |"
        echo "|---|---|---|"
        for entry in "${STEPS[@]}"; do
            IFS='|' read -r name status note <<<"$entry"
            echo "| $name | $status | $note |"
        done
        echo
        echo "Tests: $TESTS_LINE"
        echo
        if [ "${#SKIPPED[@]}" -gt 0 ]; then
            echo "## Skipped"
            for item in "${SKIPPED[@]}"; do echo "- $item"; done
            echo
        fi
        if [ -f "$OUTDIR/results_gpu.md" ]; then
            echo "## bench_gpu.py"
            echo
            cat "$OUTDIR/results_gpu.md"
        fi
    } >"$s"
}

finish() {
    local failed=0 skipped=0 entry name status note
    for entry in "${STEPS[@]}"; do
        IFS='|' read -r name status note <<<"$entry"
        case "$status" in FAILED|TIMEOUT) failed=1 ;; SKIPPED) skipped=1 ;; esac
    done
    write_summary
    header "summary"
    for entry in "${STEPS[@]}"; do
        IFS='|' read -r name status note <<<"$entry"
        printf '  %-8s %-8s %s\n' "$name" "$status" "$note"
    done
    echo "  tests:   $TESTS_LINE"
    for entry in "${SKIPPED[@]}"; do echo "  SKIPPED: $entry"; done
    if [ "$DRY_RUN" = 1 ]; then
        echo "(dry run: nothing was installed or run, nothing written)"
        exit 0
    fi
    echo "  results in $OUTDIR: $(cd "$OUTDIR" && printf '%s ' *)"
    if [ "$failed" = 1 ]; then exit 1; elif [ "$skipped" = 1 ]; then exit 2; fi
    exit 0
}

header "cnnlite GPU check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $ROOT"
echo "output folder: $OUTDIR"
[ "$DRY_RUN" = 1 ] && echo "DRY RUN: the commands are printed, not run"

# ---------------------------------------------------------------------------------------------
header "1/5 GPU (nvidia-smi)"
GPU_NAME="" DRIVER="" CUDA_VERSION="" CUDA_MAJOR=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
    if [ "$DRY_RUN" = 1 ]; then
        record GPU SKIPPED "nvidia-smi not found: a real run stops here; the plan below assumes CUDA 13"
        CUDA_VERSION="13.0 (assumed)" CUDA_MAJOR=13
    else
        record GPU FAILED "no GPU: nvidia-smi is not on the PATH (no NVIDIA driver on this machine)"
        SKIPPED+=("install, tests and benchmark: there is no NVIDIA GPU here")
        finish
    fi
else
    t=$(seconds_for $CAP_GPU $KEEP_FOR_TESTS_AND_BENCH)
    SMI=$(timeout -k 5 "$t" nvidia-smi 2>&1)
    rc=$?
    echo "$SMI"
    { echo "## nvidia-smi"; echo "$SMI"; } >>"$ENV_LOG"
    if [ "$rc" != 0 ]; then
        record GPU FAILED "no GPU: nvidia-smi exited with status $rc"
        SKIPPED+=("install, tests and benchmark: nvidia-smi sees no working GPU")
        finish
    fi
    QUERY=$(timeout -k 5 "$t" nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
            --format=csv,noheader 2>/dev/null | head -1)
    GPU_NAME=$(cut -d, -f1 <<<"$QUERY" | sed 's/^ *//;s/ *$//')
    DRIVER=$(cut -d, -f2 <<<"$QUERY" | sed 's/^ *//;s/ *$//')
    CUDA_VERSION=$(sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' <<<"$SMI" | head -1)
    CUDA_MAJOR=${CUDA_VERSION%%.*}
    MEMORY=$(cut -d, -f3 <<<"$QUERY" | sed 's/^ *//;s/ *$//')
    CAPABILITY=$(cut -d, -f4 <<<"$QUERY" | sed 's/^ *//;s/ *$//')
    record GPU PASSED "${GPU_NAME:-?}, ${MEMORY:-?}, compute capability ${CAPABILITY:-?}; driver ${DRIVER:-?}, CUDA ${CUDA_VERSION:-?}"
fi
if command -v nvcc >/dev/null 2>&1; then
    { echo; echo "## nvcc --version"; nvcc --version 2>&1; } | tee -a "$ENV_LOG" | tail -2
else
    echo "nvcc is not on the PATH (the compile tests use NVRTC from the test extra)" | tee -a "$ENV_LOG"
fi

# ---------------------------------------------------------------------------------------------
header "2/5 install"
case "$CUDA_MAJOR" in
    12) EXTRA=cuda12 TORCH_INDEX=cu126
        minor=${CUDA_VERSION#12.}; minor=${minor%% *}
        [ "${minor:-0}" -ge 8 ] 2>/dev/null && TORCH_INDEX=cu128 ;;
    ''|*[!0-9]*) EXTRA="" TORCH_INDEX="" ;;
    *) if [ "$CUDA_MAJOR" -ge 13 ]; then EXTRA=cuda13 TORCH_INDEX=cu130; else EXTRA="" TORCH_INDEX=""; fi ;;
esac
echo "what is installed before:"
probe
indent <<<"$PROBE"
{ echo "## before install"; echo "$PROBE"; } >>"$INSTALL_LOG"

HAVE_CUPY=0
case "$(probe_value cupy)" in missing*|'') ;; *) HAVE_CUPY=1 ;; esac
if [ "$HAVE_CUPY" = 1 ]; then
    SPEC="."  # cupy is there: installing another cupy-cuda* next to it would break both
    echo "cupy $(probe_value cupy) is installed: the cupy extra is left out"
elif [ -n "$EXTRA" ]; then
    SPEC=".[$EXTRA]"
    echo "CUDA $CUDA_VERSION: the $EXTRA extra (cupy-${EXTRA}x)"
else
    SPEC="."
    echo "CUDA '${CUDA_VERSION}': no cupy extra fits (cnnlite offers cuda12 and cuda13)"
fi

install_failed=""
install_warning=""
TRIED_TORCH=0
have_wheels=0
compgen -G "$WHEELS/*.whl" >/dev/null && have_wheels=1
if [ "$have_wheels" = 1 ] && [ "$SPEC" != . ] && ! compgen -G "$WHEELS/cupy_cuda*.whl" >/dev/null; then
    # Without the extra, pip still installs and checks the rest of cnnlite's dependencies.
    install_failed="cupy is not installed and $WHEELS has no cupy wheel (cupy-cuda13x 14.2.0 is 66 MiB, cupy-cuda12x 130 MiB: neither fits in the 64 MiB that may be copied to an offline GPU machine)"
    echo "$install_failed: installing without the $EXTRA extra" | tee -a "$INSTALL_LOG"
    SPEC="."
fi
if [ "$have_wheels" = 1 ]; then
    SOURCE="wheels in $WHEELS, offline (--no-index)"
    echo "packages from $WHEELS, offline:"
    du -h "$WHEELS"/*.whl | sed 's/^/  /'
    t=$(seconds_for $CAP_INSTALL $KEEP_FOR_TESTS_AND_BENCH)
    if [ "$t" = 0 ]; then
        install_failed="no time left"
    elif ! run_logged "$t" "$INSTALL_LOG" "$PY" -m pip install --no-index --find-links "$WHEELS" \
            --no-build-isolation --no-cache-dir --progress-bar off -e "$SPEC"; then
        # A read-only environment, or a dependency neither installed nor among the wheels:
        # the wheels alone into a prefix of their own (which keeps tbb's libraries where its
        # RECORD says, unlike --target), cnnlite from this checkout through PYTHONPATH.
        echo "the editable install failed: the wheels alone into /tmp/cnnlite-prefix" | tee -a "$INSTALL_LOG"
        t=$(seconds_for 60 $KEEP_FOR_TESTS_AND_BENCH)
        if [ "$t" != 0 ] && run_logged "$t" "$INSTALL_LOG" "$PY" -m pip install --no-index --no-deps --no-cache-dir \
                --progress-bar off --ignore-installed --prefix /tmp/cnnlite-prefix "$WHEELS"/*.whl; then
            site=$("$PY" -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '/tmp/cnnlite-prefix', 'platbase': '/tmp/cnnlite-prefix'}))")
            export PYTHONPATH="$site:$PYTHONPATH"
            install_warning="the editable install failed (install.log): wheels in /tmp/cnnlite-prefix, cnnlite from the checkout"
            [ -n "$install_failed" ] && install_failed="$install_failed; $install_warning"
        else
            install_failed="${install_failed:+$install_failed; }pip could not install from $WHEELS (install.log)"
        fi
    fi
else
    SOURCE="the package index (no wheels in $WHEELS)"
    # First from what is installed alone (nothing to download: quick, and it works offline);
    # then from the index, failing fast where there is no network (one retry, 15 s timeouts).
    t=$(seconds_for 60 $KEEP_FOR_TESTS_AND_BENCH)
    if [ "$t" != 0 ] && run_logged "$t" "$INSTALL_LOG" "$PY" -m pip install --no-index \
            --no-build-isolation --progress-bar off -e "$SPEC"; then
        SOURCE="what was installed already (pip --no-index found every dependency)"
    else
        t=$(seconds_for 300 $KEEP_FOR_TESTS_AND_BENCH)
        if [ "$t" = 0 ]; then
            install_failed="no time left"
        elif ! run_logged "$t" "$INSTALL_LOG" "$PY" -m pip install --retries 1 --timeout 15 \
                --progress-bar off -e "$SPEC"; then
            install_failed="pip install -e '$SPEC' failed (install.log)"
        fi
    fi
    if [ "$(probe_value torch_cuda_available)" != 1 ] && [ "${CNNLITE_INSTALL_TORCH:-1}" != 0 ] \
            && [ -n "$TORCH_INDEX" ]; then
        # bench_gpu.py compares with PyTorch on the GPU; PyPI's Linux wheel may be a CPU or
        # another CUDA's build, so the one for this driver from PyTorch's own index.
        echo "torch $(probe_value torch) cannot use the GPU: a CUDA build from PyTorch's $TORCH_INDEX index"
        TRIED_TORCH=1
        t=$(seconds_for 300 $KEEP_FOR_TESTS_AND_BENCH)
        if [ "$t" = 0 ] || ! run_logged "$t" "$INSTALL_LOG" "$PY" -m pip install --retries 1 \
                --timeout 15 --progress-bar off --upgrade torch \
                --index-url "https://download.pytorch.org/whl/$TORCH_INDEX"; then
            install_failed="${install_failed:+$install_failed; }installing a CUDA build of torch failed (install.log)"
        fi
    fi
fi

if [ "$DRY_RUN" = 0 ]; then
    probe
    { echo "## after install"; echo "$PROBE"; } >>"$INSTALL_LOG"
    echo "what is installed now:"
    indent <<<"$PROBE"
fi
# 1 yes, 0 no, "unknown" when the probe did not get that far (out of time, or it hung).
GPU_SEEN=unknown
if grep -q '^cupy=' <<<"$PROBE"; then
    GPU_SEEN=0
    [ "$(probe_value cupy_devices | cut -d' ' -f1)" -ge 1 ] 2>/dev/null && GPU_SEEN=1
fi
TORCH_CUDA=unknown
if grep -q '^torch=' <<<"$PROBE"; then
    TORCH_CUDA=0
    [ "$(probe_value torch_cuda_available | cut -d' ' -f1)" = 1 ] && TORCH_CUDA=1
fi
[ "$DRY_RUN" = 1 ] && GPU_SEEN=1 TORCH_CUDA=1  # the plan of a real run on a GPU machine
if [ "$TRIED_TORCH" = 1 ] && [ "$TORCH_CUDA" = 0 ]; then
    install_failed="${install_failed:+$install_failed; }torch is still $(probe_value torch), without CUDA, after pip (install.log)"
fi
if [ "$DRY_RUN" = 1 ]; then
    record install PLANNED "$SOURCE"
elif [ -n "$install_failed" ]; then
    record install FAILED "$install_failed"
elif [ "$GPU_SEEN" = 0 ]; then
    case "$(probe_value cupy)" in
        missing*|'') record install FAILED "cupy is not installed: $(probe_value cupy)" ;;
        *) record install FAILED "cupy $(probe_value cupy) sees no GPU: $(probe_value cupy_devices)" ;;
    esac
elif [ "$GPU_SEEN" = unknown ]; then
    record install WARN "${install_warning:+$install_warning; }the check of the installed packages did not finish (install.log)"
elif [ -n "$install_warning" ]; then
    record install WARN "$install_warning"
else
    record install PASSED "$SOURCE; cupy $(probe_value cupy), torch $(probe_value torch)"
fi

# ---------------------------------------------------------------------------------------------
header "3/5 versions (python -m cnnlite info)"
{ echo; echo "## python packages"; echo "$PROBE"; echo; echo "## python -m cnnlite info"; } >>"$ENV_LOG"
t=$(seconds_for $CAP_INFO $KEEP_FOR_TESTS_AND_BENCH)
if [ "$t" = 0 ]; then
    record info SKIPPED "no time left"
elif run_logged "$t" "$ENV_LOG" "$PY" -m cnnlite info; then
    record info "$([ "$DRY_RUN" = 1 ] && echo PLANNED || echo PASSED)" ""
else
    record info FAILED "python -m cnnlite info failed (environment.txt)"
fi

# ---------------------------------------------------------------------------------------------
header "4/5 GPU tests (pytest)"
# The GPU tests carry skipif marks (tests/test_cuda_gpu.py's needs_gpu, the cupy checks of
# test_data.py and test_nn.py, the NVRTC checks of test_cuda_nvrtc.py): no marker selects
# them, so whole files plus the tests named for cuda or gpu. Without a GPU they would all
# "pass" as skips, so a skip that names a missing GPU, cupy or NVRTC fails the step.
PYTEST_ARGS=(tests/test_cuda_gpu.py tests/test_cuda_compile.py tests/test_cuda_nvrtc.py
             tests/test_backend.py tests/test_data.py tests/test_nn.py tests/test_cli.py -k "cuda or gpu"
             -ra --junitxml="$OUTDIR/pytest-junit.xml" -p no:cacheprovider)
# One test that hangs (a kernel that never ends) then costs its own 150 s, not the whole step.
case "$(probe_value pytest-timeout)" in missing|'') ;; *) PYTEST_ARGS+=(--timeout=150) ;; esac
# shellcheck disable=SC2206  # word splitting of the user's extra arguments is wanted
[ -n "${CNNLITE_PYTEST_ARGS:-}" ] && PYTEST_ARGS+=($CNNLITE_PYTEST_ARGS)
t=$(seconds_for $CAP_TESTS $KEEP_FOR_BENCH)
if [ "$t" = 0 ]; then
    record tests SKIPPED "no time left"
    SKIPPED+=("the GPU tests: no time left in the budget")
else
    run_logged "$t" "$PYTEST_LOG" "$PY" -m pytest "${PYTEST_ARGS[@]}"
    rc=$?
    [ "$DRY_RUN" = 0 ] && TESTS_LINE=$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* =+$' "$PYTEST_LOG" \
                 | tail -1 | sed 's/^=* *//;s/ *=*$//')
    [ -n "$TESTS_LINE" ] || TESTS_LINE="(no summary line: pytest status $rc)"
    [ "$DRY_RUN" = 1 ] && TESTS_LINE="(not run: dry run)"
    # "SKIPPED [54] tests/test_cuda_gpu.py:63: no GPU: cupy not installed" -> the count and
    # the distinct reasons.
    GPU_SKIPS=$(grep -E '^SKIPPED \[[0-9]+\] .*(no GPU:|needs cupy and a CUDA GPU|needs a CUDA GPU and cupy|NVRTC [0-9]+ not found)' "$PYTEST_LOG" \
                | awk '{ n += substr($2, 2, length($2) - 2); $1 = $2 = $3 = ""; sub(/^ +/, "")
                         if (!($0 in seen)) { seen[$0] = 1; why = why (why ? "; " : "") $0 } }
                       END { if (n) printf "%d tests skipped instead of run: %s", n, why }')
    if [ "$DRY_RUN" = 1 ]; then
        record tests PLANNED ""
    elif [ "$rc" = 124 ]; then
        record tests TIMEOUT "pytest ran past ${t}s (pytest.log has what it printed)"
    elif [ "$rc" != 0 ]; then
        record tests FAILED "pytest exited with status $rc: $TESTS_LINE"
    elif [ -n "$GPU_SKIPS" ]; then
        record tests FAILED "$GPU_SKIPS"
    else
        record tests PASSED "$TESTS_LINE"
    fi
fi

# ---------------------------------------------------------------------------------------------
header "5/5 benchmark (benchmarks/bench_gpu.py)"
BENCH_ARGS=(--quick)
[ "$FULL" = 1 ] && BENCH_ARGS=()
RESULTS="$ROOT/benchmarks/results_gpu.md"
MARKER=$(mktemp)
if [ "$TORCH_CUDA" = 0 ]; then
    why="torch $(probe_value torch) (CUDA build: $(probe_value torch_cuda_build)) cannot use the GPU"
    record bench SKIPPED "$why"
    SKIPPED+=("benchmarks/bench_gpu.py, all of it: $why. The script imports torch at its top and times every case against PyTorch + cuDNN on the GPU (setup_gpu exits without a CUDA build of PyTorch), so none of its three parts ran: conv2d against cuDNN, the memory-bound kernels against the copy bandwidth and PyTorch, the training step against PyTorch. A CUDA build of torch cannot travel as a wheel to an offline machine within a 64 MiB limit (torch 2.11.0 for CUDA 13 alone is 531 MB). cnnlite's own GPU code was still checked by the tests above.")
elif [ "$GPU_SEEN" = 0 ]; then
    record bench SKIPPED "cupy sees no GPU"
    SKIPPED+=("benchmarks/bench_gpu.py: cupy sees no GPU ($(probe_value cupy))")
else
    t=$(seconds_for $CAP_BENCH)
    if [ "$t" = 0 ]; then
        record bench SKIPPED "no time left"
        SKIPPED+=("benchmarks/bench_gpu.py: no time left in the budget")
    else
        run_logged "$t" "$BENCH_LOG" "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}"
        rc=$?
        if [ "$DRY_RUN" = 1 ]; then
            record bench PLANNED "writes $RESULTS"
        elif [ "$rc" = 124 ]; then
            record bench TIMEOUT "bench_gpu.py ran past ${t}s (bench_gpu.log)"
        elif [ "$rc" != 0 ]; then
            record bench FAILED "bench_gpu.py exited with status $rc: $(grep -v '^\s*$' "$BENCH_LOG" | tail -1 | cut -c1-300)"
        elif [ ! "$RESULTS" -nt "$MARKER" ]; then
            record bench FAILED "bench_gpu.py wrote no new $RESULTS"
        else
            record bench PASSED "benchmarks/results_gpu.md ${BENCH_ARGS[*]}"
        fi
        if [ "$DRY_RUN" = 0 ] && [ -f "$RESULTS" ] && [ "$RESULTS" -nt "$MARKER" ]; then
            cp "$RESULTS" "$OUTDIR/results_gpu.md"
        fi
    fi
fi
rm -f "$MARKER"

finish
