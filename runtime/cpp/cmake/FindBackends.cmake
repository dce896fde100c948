# Finds the inference SDKs and makes private imported targets for them:
#   disseg_onnxruntime (DISSEG_HAVE_ONNXRUNTIME) and disseg_tensorrt (DISSEG_HAVE_TENSORRT).

# ONNX Runtime: a release-tarball layout under ONNXRUNTIME_ROOT, else an installed CMake package. An explicit
# ONNXRUNTIME_ROOT is taken as it is, also in a cross build with a sysroot (it is not re-rooted there).
if(ONNXRUNTIME_ROOT)
  set(ort_find_options NO_CMAKE_FIND_ROOT_PATH)
endif()
find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS ${ONNXRUNTIME_ROOT}/include PATH_SUFFIXES onnxruntime onnxruntime/core/session ${ort_find_options})
find_library(ONNXRUNTIME_LIBRARY onnxruntime HINTS ${ONNXRUNTIME_ROOT}/lib ${ort_find_options})
if(ONNXRUNTIME_INCLUDE_DIR AND ONNXRUNTIME_LIBRARY)
  add_library(disseg_onnxruntime INTERFACE)
  target_include_directories(disseg_onnxruntime SYSTEM INTERFACE ${ONNXRUNTIME_INCLUDE_DIR})
  target_link_libraries(disseg_onnxruntime INTERFACE ${ONNXRUNTIME_LIBRARY})
  set(DISSEG_HAVE_ONNXRUNTIME ON)
  message(STATUS "ONNX Runtime: ${ONNXRUNTIME_LIBRARY}")
else()
  find_package(onnxruntime CONFIG QUIET)
  if(TARGET onnxruntime::onnxruntime)
    add_library(disseg_onnxruntime INTERFACE)
    target_link_libraries(disseg_onnxruntime INTERFACE onnxruntime::onnxruntime)
    set(DISSEG_HAVE_ONNXRUNTIME ON)
    message(STATUS "ONNX Runtime: CMake package ${onnxruntime_DIR}")
  endif()
endif()

# TensorRT 10+ (name-based I/O API) with the CUDA runtime, as JetPack 6 installs them; or TensorRT for RTX
# (libtensorrt_rtx, TRT_MAJOR_RTX in NvInferVersion.h), which runs the engines `dis-export --gpu-arch` builds.
find_path(TENSORRT_INCLUDE_DIR NvInfer.h HINTS ${TENSORRT_ROOT}/include PATH_SUFFIXES aarch64-linux-gnu x86_64-linux-gnu)
find_library(TENSORRT_LIBRARY NAMES nvinfer tensorrt_rtx HINTS ${TENSORRT_ROOT}/lib)
find_package(CUDAToolkit QUIET)
if(TENSORRT_INCLUDE_DIR AND TENSORRT_LIBRARY AND CUDAToolkit_FOUND)
  # "#define NV_TENSORRT_MAJOR 10", from 10.x on "#define TRT_MAJOR_ENTERPRISE 10", for RTX "#define TRT_MAJOR_RTX 1"
  file(STRINGS ${TENSORRT_INCLUDE_DIR}/NvInferVersion.h trt_major REGEX "define +(NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE|TRT_MAJOR_RTX) +[0-9]+")
  string(REGEX MATCH "[0-9]+" trt_major "${trt_major}")
  get_filename_component(trt_lib_name ${TENSORRT_LIBRARY} NAME)
  if(trt_lib_name MATCHES "tensorrt_rtx")
    set(DISSEG_TENSORRT_FLAVOUR tensorrt_rtx)
    set(trt_minimum 1)
  else()
    set(DISSEG_TENSORRT_FLAVOUR tensorrt)
    set(trt_minimum 10)
  endif()
  if(trt_major AND trt_major GREATER_EQUAL ${trt_minimum})
    add_library(disseg_tensorrt INTERFACE)
    target_include_directories(disseg_tensorrt SYSTEM INTERFACE ${TENSORRT_INCLUDE_DIR})
    target_link_libraries(disseg_tensorrt INTERFACE ${TENSORRT_LIBRARY} CUDA::cudart)
    target_compile_definitions(disseg_tensorrt INTERFACE DISSEG_TENSORRT_FLAVOUR="${DISSEG_TENSORRT_FLAVOUR}"
                               $<$<STREQUAL:${DISSEG_TENSORRT_FLAVOUR},tensorrt_rtx>:DISSEG_TENSORRT_RTX>)
    set(DISSEG_HAVE_TENSORRT ON)
    message(STATUS "${DISSEG_TENSORRT_FLAVOUR} ${trt_major}: ${TENSORRT_LIBRARY}")
  else()
    message(STATUS "${DISSEG_TENSORRT_FLAVOUR} at ${TENSORRT_INCLUDE_DIR} is older than ${trt_minimum}; its backend is not built")
  endif()
endif()
