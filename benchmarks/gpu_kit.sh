#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.py needs on a lent GPU machine (Python 3.12, PyTorch 2.11 + CUDA 13, CPU-only
# ONNX Runtime, no network), cut into parts that each fit one device call (64 MiB with the working tree).
#
#   here:   bash benchmarks/gpu_kit.sh pack      # .gpu-kit/part-00, part-01, ... and .gpu-kit/SHA256 (git-ignored)
#   there:  one call per part, back to back (a warm machine keeps /tmp 30 s between calls), each carrying
#           [".gpu-kit/part-NN", ".gpu-kit/SHA256"] and running:    bash benchmarks/gpu_kit.sh take
#   there, in the call with the last part:
#           bash benchmarks/gpu_kit.sh take && bash benchmarks/gpu_kit.sh install &&
#           PYTHONPATH=/tmp/gpu-site python3 benchmarks/gpu_check.py --json $OUT/gpu_check.json
#
# GPU_KIT_FROM=DIR packs the wheels in DIR instead of downloading (the tests use it); the other GPU_KIT_* variables
# below override folders, part size and wheels. Exit 2 with one line when a part is missing or corrupt.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-.gpu-kit}
STORE=${GPU_KIT_STORE:-/tmp/gpu-kit}
SITE=${GPU_KIT_SITE:-/tmp/gpu-site}
PART_SIZE=${GPU_KIT_PART_SIZE:-62M}  # 4 parts for onnxruntime-gpu 1.31.1; 62 MiB + the tree < 64
WHEELS=${GPU_KIT_WHEELS:-onnxruntime-gpu==1.31.1 onnxconverter-common==1.16.0}
PY=${GPU_KIT_PYTHON:-python3}

fail() {
    echo "error: $*" >&2
    exit 2
}

pack() {
    rm -rf "$KIT"
    mkdir -p "$KIT/wheels"
    if [ -n "${GPU_KIT_FROM:-}" ]; then
        cp "$GPU_KIT_FROM"/*.whl "$KIT/wheels/"
    else
        # shellcheck disable=SC2086  # WHEELS is a list of requirements
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$KIT/wheels" $WHEELS
    fi
    tar -C "$KIT" -cf - wheels | split -b "$PART_SIZE" -d -a 2 - "$KIT/part-"
    rm -rf "$KIT/wheels"
    (cd "$KIT" && sha256sum part-* > SHA256)
    local largest tree
    largest=$(stat -c %s "$KIT"/part-* | sort -n | tail -1)
    tree=$(git ls-files -z | xargs -0 -r stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')
    echo "packed $(wc -l < "$KIT/SHA256") parts into $KIT: carry one with $KIT/SHA256 per device call" \
        "($(((largest + tree) / 1048576)) MiB with the tracked tree; the limit is 64)"
}

take() {
    [ -f "$KIT/SHA256" ] || fail "$KIT/SHA256 not carried: carry it with each part (bash benchmarks/gpu_kit.sh pack)"
    mkdir -p "$STORE"
    cp "$KIT/SHA256" "$STORE/"
    for part in "$KIT"/part-*; do
        if [ -e "$part" ]; then cp "$part" "$STORE/"; fi
    done
    local have=0 total=0 name
    while read -r _ name; do
        total=$((total + 1))
        if [ -f "$STORE/$name" ]; then have=$((have + 1)); fi
    done < "$STORE/SHA256"
    echo "$have of $total parts in $STORE"
}

install() {
    [ -f "$STORE/SHA256" ] || fail "no parts in $STORE: run 'take' in the calls that carry them first"
    (cd "$STORE" && sha256sum --quiet -c SHA256 2> /dev/null) ||
        fail "a part in $STORE is missing or corrupt (sha256sum -c $STORE/SHA256): carry it again, then install"
    rm -rf "$STORE/wheels"
    cat "$STORE"/part-* | tar -C "$STORE" -xf -
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$STORE"/wheels/*.whl
    echo "installed $(ls "$STORE"/wheels | tr '\n' ' ')into $SITE: PYTHONPATH=$SITE"
}

case "${1:-}" in
    pack | take | install) "$1" ;;
    *) fail "usage: bash benchmarks/gpu_kit.sh pack|take|install (see the top of this file)" ;;
esac
