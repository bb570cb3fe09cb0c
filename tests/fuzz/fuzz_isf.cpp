// Volatility ISF JSON (plain or xz), as an operator might be handed one.
#include <span>

#include "fuzz_target.h"
#include "kernel/profile/isf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto isf = nfm::parse_isf(std::span(data, size));
  if (!isf) return 0;
  (void)isf->symbols.lookup("init_task");
  if (auto t = isf->types.find_struct("task_struct")) (void)isf->types.member(*t, "comm");
  return 0;
}
