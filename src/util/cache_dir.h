// Where nfm keeps what it can make again (profiles, compiled rules): $NFM_CACHE_DIR,
// else $XDG_CACHE_HOME/nfm, else ~/.cache/nfm; one subdirectory per kind.
#pragma once

#include <string>
#include <string_view>

namespace nfm {

// "<cache root>/<kind>", or "" when there is no home to put it in.
std::string cache_dir(std::string_view kind);

}  // namespace nfm
