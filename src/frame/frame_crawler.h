// Makes frames: crawls one attached kernel again and again, each asked-for
// feature through its registered crawl function, in frame order.
#pragma once

#include "frame/frame.h"

namespace nfm {

class Kernel;

// Each feature resolves its layout once, on first use; a feature this kernel
// cannot provide fails alone (its status says why), the others go on.
class FrameCrawler {
 public:
  explicit FrameCrawler(Kernel& kernel) : kernel_(&kernel), context_(kernel) {}
  Frame crawl(const FrameOptions& options = {});

 private:
  Kernel* kernel_;
  CrawlContext context_;
};

}  // namespace nfm
