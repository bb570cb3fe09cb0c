// The sections part of docs/frame-schema.md, made from the features' own
// declarations (`nfm schema` prints it; a unit test keeps the document in step).
#pragma once

#include <string>

namespace nfm {

std::string frame_sections_markdown();

}  // namespace nfm
