// PLACEHOLDER until the stores branch lands: open_store() as declared in
// frame_store.h, refusing every spec. The stores branch defines the real one;
// delete this file when merging it (a duplicate definition will not link).
#include <string>

#include "store/frame_store.h"

namespace nfm {

Result<std::unique_ptr<FrameStore>> open_store(std::string_view spec) {
  return make_error(Errc::unsupported, "cannot open store \"" + std::string(spec) +
                                           "\": this build has no frame stores yet");
}

}  // namespace nfm
