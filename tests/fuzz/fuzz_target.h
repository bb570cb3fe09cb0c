// What every nfm fuzz target defines: libFuzzer's entry point. A fuzz target is one
// file; built with clang (-DNFM_FUZZ=ON, scripts/fuzz.sh) it links libFuzzer, built
// with the normal toolchain it links replay_main.cpp and replays inputs (the CI
// regression run over the seeds and every input that once crashed).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional one-time set-up (argv: the fuzzer's own arguments).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
