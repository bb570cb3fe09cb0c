// The JSON form of frames. Each section is written and read by its feature's
// declaration (features/*/rows.h), so `nfm ps --json` is exactly the `processes`
// section of `nfm frame` and a key means the same thing everywhere.
// Schema: docs/frame-schema.md.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "frame/frame.h"
#include "util/result.h"

namespace nfm {

nlohmann::json frame_json(const Frame& frame);
// frame_json without the sections: "schema", "version" and "meta".
nlohmann::json frame_meta_json(const Frame& frame);

// The inverse of frame_json: stores read frames back typed. Unknown keys are
// ignored (newer writers); a missing or mistyped required key is an error naming it.
// frame_from_json(frame_json(f)) reproduces f's JSON exactly.
Result<Frame> frame_from_json(const nlohmann::json& j);

// Guest text (comm, log lines) is bytes, not always UTF-8: dump() replaces what
// JSON cannot carry instead of throwing. indent < 0 = one line.
std::string dump_json(const nlohmann::json& j, int indent = 1);

}  // namespace nfm
