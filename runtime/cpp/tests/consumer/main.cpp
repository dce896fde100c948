// Links against an installed libdisseg through find_package; prints the backends it was built with and,
// given a model, its class count (exit 2 with the library's line when the model is rejected).
#include <iostream>

#include <disseg/disseg.h>
#include <disseg/segmenter.hpp>

int main(int argc, char** argv) {
  for (const auto& name : disseg::available_backends()) std::cout << "backend " << name << "\n";
  if (argc < 2) return 0;
  disseg_segmenter* seg = nullptr;
  if (disseg_create(argv[1], "auto", 1, &seg) != DISSEG_OK) {
    std::cerr << disseg_last_error() << "\n";
    return 2;
  }
  std::cout << "classes " << disseg_num_classes(seg) << "\n";
  disseg_destroy(seg);
  return 0;
}
