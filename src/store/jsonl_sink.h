// JSON Lines sinks: `stdout` and `file:PATH` (one frame per line, frame_json as one
// line; files rotate by size to PATH.1 .. PATH.N, newest first).
#pragma once

#include <memory>
#include <string>

#include "store/frame_sink.h"

namespace nfm {

// Writes frames to standard output, one per line (flushed per frame).
std::unique_ptr<FrameSink> open_stdout_sink();

// Appends frames to PATH, one per line; at `options.rotate_bytes` renames PATH to
// PATH.1 (PATH.1 to PATH.2 ... keeping `options.rotate_keep`) and starts a new PATH.
// Lines are written whole (a reader never sees half a frame, except a crash mid-write).
Result<std::unique_ptr<FrameSink>> open_file_sink(const std::string& path,
                                                  const SinkOptions& options);

}  // namespace nfm
