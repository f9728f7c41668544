#!/usr/bin/env bash
# `make gpu-wheels`: download into .gpu-wheels/ (git-ignored) the wheels that the GPU machine lacks, for its
# CPython 3.12 on manylinux x86_64. That machine has no network; the folder travels with the `device` tool's
# `carry` (64 MiB for the whole working tree) and benchmarks/gpu_check.sh installs it there with --no-index.
#
# What is missing there (its image has torch, torchvision, numpy, scipy, opencv, Pillow, PyYAML, tabulate, tqdm,
# matplotlib, scikit-learn, tensorboard, Cython, setuptools, pytest, pytest-timeout):
#   fastreid   1.4.0, pure Python (installed --no-deps: it pins torch 1.13; fastreid_gan.compat adapts it)
#   yacs       fastreid's config system (needs PyYAML: there)
#   termcolor  imported by fastreid's logger, checkpointer and datasets
#   faiss-cpu  imported by fastreid and by the evaluator's k-NN search; one abi3 wheel (cp310+) that holds
#              CPU code only: faiss's GPU builds are CUDA 12 wheels of several hundred MB with CUDA 12 runtimes
# gdown (fastreid imports it lazily, for downloads only) is left out: nothing is downloaded there.
# build/ holds setuptools for this project's own build only (pyproject.toml needs setuptools>=77; the machine's
# may be older, torch 2.11 asks for <82): gpu_check.sh uses it through --find-links in pip's isolated build
# environment, so the machine's own setuptools stays as it is.
# Versions are the ones .venv runs the test suite with; one version of each (two would stop the install).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${GPU_WHEELS:-.gpu-wheels}
MAX_MIB=${GPU_WHEELS_MAX_MIB:-40}  # the tree that travels must stay under 64 MiB with the repository itself
WHEELS=(fastreid==1.4.0 yacs==0.1.8 termcolor==3.3.0 faiss-cpu==1.15.1)
BUILD_WHEELS=(setuptools==84.2.1)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

download() {  # download DIR SPEC...: CPython 3.12 manylinux x86_64 wheels, no dependencies
    local dir=$1
    shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}

rm -rf "$DEST"
mkdir -p "$DEST/build"
download "$DEST" "${WHEELS[@]}"
download "$DEST/build" "${BUILD_WHEELS[@]}"

count=$(find "$DEST" -name '*.whl' | wc -l)
expected=$(( ${#WHEELS[@]} + ${#BUILD_WHEELS[@]} ))
if [ "$count" -ne "$expected" ]; then
    echo "expected $expected wheels in $DEST, found $count" >&2
    exit 1
fi
ls -l "$DEST" "$DEST/build"
bytes=$(find "$DEST" -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')
echo "$count wheels, $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB) in $DEST"
if [ "$bytes" -gt $(( MAX_MIB * 1048576 )) ]; then
    echo "$DEST is over ${MAX_MIB} MiB: with the repository it would not travel (64 MiB)" >&2
    exit 1
fi
