#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

// The exported test model (tests/make_test_model.py); tests that run a model skip without it.
inline std::string test_model() {
  const char* path = std::getenv("DISSEG_TEST_MODEL");
  return path ? path : "";
}

#define REQUIRE_TEST_MODEL()                                                    \
  do {                                                                          \
    if (test_model().empty()) GTEST_SKIP() << "DISSEG_TEST_MODEL is not set";   \
    if (!DISSEG_HAVE_ONNXRUNTIME) GTEST_SKIP() << "built without ONNX Runtime"; \
  } while (0)

inline std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("disseg-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}
