// The lab's checked-in 6.1 dump (tests/golden/lab-6.1-cloud.elf.zst), decompressed once
// per process into a temporary file that is removed when the process exits. The
// including target defines NFM_SOURCE_DIR.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace nfm::testing {

// Its path, or "" when zstd could not write it.
inline const std::string& golden_dump_path() {
  struct TempDump {
    std::string path;
    TempDump() {
      const std::string p = std::filesystem::temp_directory_path() /
                            ("nfm-golden-" + std::to_string(getpid()) + ".elf");
      const std::string cmd =
          "zstd -q -d --long=28 -f " NFM_SOURCE_DIR "/tests/golden/lab-6.1-cloud.elf.zst -o " + p;
      if (std::system(cmd.c_str()) == 0) path = p;
    }
    ~TempDump() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove(path, ec);
    }
  };
  static const TempDump dump;
  return dump.path;
}

}  // namespace nfm::testing
