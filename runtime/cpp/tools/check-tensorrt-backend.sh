#!/usr/bin/env bash
# Compile the C++ TensorRT backend against each given TensorRT include folder, with our warnings as errors, and link
# libdisseg + dis_run_cpp against TensorRT for RTX's libtensorrt_rtx from pip, with CUDA 13's headers and libcudart
# from pip's nvidia-cuda-runtime and nvidia-cuda-crt (installed into the work folder). Nothing runs: no machine here
# has a GPU.
#
#   bash runtime/cpp/tools/check-tensorrt-backend.sh PYTHON TRT_INCLUDE_DIR...
#
# PYTHON: an interpreter whose site-packages hold tensorrt_rtx_libs (pip install "disseg[tensorrt-rtx]"); its pip
# fetches the CUDA headers from the package index. Each TRT_INCLUDE_DIR is a TensorRT
# release's include/ (NvInfer.h, NvInferVersion.h, ...), e.g. NVIDIA/TensorRT's include/ at a release tag.
# Per folder: tensorrt_backend.cpp compiled as the "tensorrt" flavour (-c, -Werror), then the whole library and
# dis_run_cpp built and linked as the "tensorrt_rtx" flavour. Exit 0 when every folder passes.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PYTHON TRT_INCLUDE_DIR..." >&2; exit 2; }
python=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rtx=$site/tensorrt_rtx_libs/libtensorrt_rtx.so.1
[ -f "$rtx" ] || { echo "error: $rtx is missing; pip install 'disseg[tensorrt-rtx]' into $python's environment" >&2; exit 2; }
work=${DISSEG_TRT_CHECK_DIR:-build/trt-check}
cuda=$work/cuda-pip/nvidia/cu13
if [ ! -f "$cuda/include/crt/host_defines.h" ]; then
  "$python" -m pip install -q --no-deps --target "$work/cuda-pip" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*"
fi
mkdir -p "$work/cuda/lib64"
ln -sfn "$cuda/include" "$work/cuda/include"
ln -sf "$(ls "$cuda"/lib/libcudart.so.* | head -1)" "$work/cuda/lib64/libcudart.so"
ort=()
[ -n "${ONNXRUNTIME_ROOT:-}" ] && ort=(-DONNXRUNTIME_ROOT="$ONNXRUNTIME_ROOT")
failed=0
for include in "$@"; do
  name=$(basename "$(dirname "$include")")-$(basename "$include")
  version=$(grep -hoE "define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+" "$include/NvInferVersion.h" |
    awk '{print $3}' | head -3 | paste -sd.)
  root=$work/$name
  mkdir -p "$root/lib"
  ln -sfn "$(cd "$include" && pwd)" "$root/include"
  ln -sf "$rtx" "$root/lib/libtensorrt_rtx.so"
  ln -sf "$rtx" "$root/lib/libtensorrt_rtx.so.1"
  echo "== TensorRT $version headers ($include)"
  if ! g++ -std=c++17 -Wall -Wextra -Werror -c "$here/src/tensorrt_backend.cpp" -o "$root/tensorrt_backend.o" \
      -I"$here/include" -I"$here/src" -isystem "$include" -isystem "$cuda/include" $(pkg-config --cflags opencv4) \
      -DDISSEG_TENSORRT_FLAVOUR='"tensorrt"' -DDISSEG_WITH_TENSORRT; then
    echo "FAILED: the tensorrt flavour does not compile against TensorRT $version"; failed=1; continue
  fi
  echo "ok: the tensorrt flavour compiles against TensorRT $version (-Wall -Wextra -Werror)"
  if cmake -S "$here" -B "$root/build" -DTENSORRT_ROOT="$root" -DCUDAToolkit_ROOT="$work/cuda" -DDISSEG_WERROR=ON \
      -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$root/lib" -DBUILD_TESTING=OFF "${ort[@]}" >"$root/configure.log" 2>&1 &&
    grep -q "backends: .*tensorrt" "$root/configure.log" &&
    cmake --build "$root/build" -j "$(nproc)" --target dis_run_cpp >"$root/build.log" 2>&1; then
    echo "ok: libdisseg + dis_run_cpp built and linked as tensorrt_rtx against libtensorrt_rtx with these headers"
  else
    echo "FAILED: the tensorrt_rtx build (logs in $root/configure.log, build.log):"
    tail -20 "$root/build.log" 2>/dev/null || tail -20 "$root/configure.log"
    failed=1
  fi
done
exit $failed
