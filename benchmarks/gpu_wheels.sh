#!/usr/bin/env bash
# Download, on a machine that reaches the package index, the wheels that an offline GPU machine
# needs for benchmarks/gpu_check.sh, into .whl/ (or $CNNLITE_WHEELS). gpu_check.sh installs them
# there with `pip install --no-index --find-links`.
#
#     bash benchmarks/gpu_wheels.sh                  # the default list below
#     bash benchmarks/gpu_wheels.sh NAME==VERSION... # other or more packages
#
# The default list is for the project's GPU test machine, an H200 node without network. It has
# (as documented 2026-11): Python 3.12.3, torch 2.11.0 built for CUDA 13.0 (it sees the
# GPU), cupy-cuda13x 14.2.0, numba, numpy 2.5.2, tqdm, matplotlib, scikit-learn, pillow,
# threadpoolctl, pytest, pytest-timeout, hypothesis, setuptools, wheel, and nvcc 13.0 with
# driver 580. Of cnnlite's dependencies (setup.py's install_requires and the cuda13 extra) it
# lacks only tbb, which needs tcmlib: 9.2 MiB together. Nothing else needs to travel:
#   - cupy: already there. cupy-cuda13x 14.2.0 is 66 MiB (cupy-cuda12x 130 MiB), over the
#     64 MiB that may be copied to that machine in all (LIMIT_MIB), so it could not travel anyway.
#   - torch with CUDA for bench_gpu.py: already there. It could not travel either: the torch
#     2.11.0 wheel for CUDA 13 is 506 MiB, and it needs several GB of nvidia-* wheels.
#   - the test extra's pins (torch==2.13.0, the CPU build of the CI machines; nbclient,
#     nbformat, ipykernel for the notebook tests) are not needed for the GPU tests, and
#     gpu_check.sh does not install that extra.
# Two versions of one package in the folder stop pip, so the versions are pinned; the script
# refuses to add a second one.
#
# Copy the folder to the GPU machine together with the repository. .gitignore ignores .whl/,
# so it is never committed.
#
# Environment: CNNLITE_WHEELS (the folder), DEVICE_PYTHON (default 3.12), PYTHON (the pip here,
# default python3).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${CNNLITE_WHEELS:-$ROOT/.whl}"
DEVICE_PYTHON="${DEVICE_PYTHON:-3.12}"
PY="${PYTHON:-python3}"
LIMIT_MIB=64

DEFAULT=(tbb==2023.2.0 tcmlib==1.6.0)
if [ "$#" -gt 0 ]; then PACKAGES=("$@"); else PACKAGES=("${DEFAULT[@]}"); fi

# The device is x86-64 Linux with a recent glibc (Ubuntu 24.04's Python 3.12.3): pip matches
# each manylinux tag exactly, so every one that such a machine accepts.
PLATFORMS=()
for tag in manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64 \
           manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 \
           manylinux_2_35_x86_64 manylinux_2_39_x86_64 linux_x86_64; do
    PLATFORMS+=(--platform "$tag")
done

mkdir -p "$DEST"
echo "==== downloading for CPython $DEVICE_PYTHON, x86-64 Linux, into $DEST: ${PACKAGES[*]}"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${PACKAGES[@]}"

echo
echo "==== the folder"
status=0
declare -A seen=()
for wheel in "$DEST"/*.whl; do
    base=$(basename "$wheel")
    name=$(cut -d- -f1 <<<"$base" | tr 'A-Z_.' 'a-z--')
    if [ -n "${seen[$name]:-}" ]; then
        echo "ERROR: two versions of $name: ${seen[$name]} and $base (pip would refuse both; delete one)"
        status=1
    fi
    seen[$name]=$base
done
for wheel in "$DEST"/*.whl; do
    printf '%8s  %s\n' "$(du -h "$wheel" | cut -f1)" "$(basename "$wheel")"
    # What each wheel needs (its extras left out), and whether the folder has it; anything
    # else must already be on the GPU machine.
    { unzip -p "$wheel" '*.dist-info/METADATA' 2>/dev/null || true; } \
        | sed -n '/^Requires-Dist:.*extra *==/d; s/^Requires-Dist: //p' | while read -r requirement; do
            need=$(tr 'A-Z_.' 'a-z--' <<<"${requirement%%[ ;<>=!~(\[]*}")
            where="must already be on the GPU machine"
            [ -n "${seen[$need]:-}" ] && where="in the folder"
            printf '          needs %s: %s\n' "$requirement" "$where"
        done
done

wheels_bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
# What else travels: the tracked files and the untracked ones that git does not ignore.
tree_bytes=0
if git -C "$ROOT" rev-parse >/dev/null 2>&1; then
    tree_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
                 | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
fi
total=$((wheels_bytes + tree_bytes))
awk -v w="$wheels_bytes" -v t="$tree_bytes" -v limit="$LIMIT_MIB" 'BEGIN {
    printf "\nwheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the %d MiB that travel\n",
           w / 1048576, t / 1048576, (w + t) / 1048576, limit }'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "ERROR: over the limit of what may be copied to the GPU machine"
    status=1
fi
if git -C "$ROOT" rev-parse >/dev/null 2>&1 && [ "$DEST" = "$ROOT/.whl" ] \
        && ! git -C "$ROOT" check-ignore -q .whl/x.whl; then
    echo "WARNING: .whl/ is not ignored by git: add '/.whl/' to .gitignore"
fi
exit "$status"
