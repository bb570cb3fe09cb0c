// open_sink(): one --emit spec to a sink. A plain dispatch on the scheme; each sink
// lives in its own file.
#include <fmt/core.h>

#include "store/frame_sink.h"
#include "store/jsonl_sink.h"

namespace nfm {

Result<std::unique_ptr<FrameSink>> open_sink(std::string_view spec, const SinkOptions& options) {
  const size_t colon = spec.find(':');
  const std::string scheme(spec.substr(0, colon));
  const std::string rest(colon == std::string_view::npos ? "" : spec.substr(colon + 1));
  if (spec == "stdout") return open_stdout_sink();
  if (scheme == "file") return open_file_sink(rest, options);
  return make_error(Errc::invalid_argument,
                    fmt::format("unknown --emit scheme in '{}' (known: stdout, file:PATH)", spec));
}

}  // namespace nfm
