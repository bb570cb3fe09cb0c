// Pictures through graphviz's own library. libgvc and libcgraph are loaded on
// first use (util/shared_library.h): only `nfm topology --format svg|png` needs them.
#include <gvc.h>

#include <memory>

#include "topology/render.h"
#include "util/shared_library.h"

namespace nfm::topology {

namespace {

#define GRAPHVIZ_FUNCTIONS(X) \
  X(agmemread)                \
  X(agclose)                  \
  X(gvContext) X(gvFreeContext) X(gvLayout) X(gvFreeLayout) X(gvRenderData) X(gvFreeRenderData)
NFM_LIBRARY_API(Graphviz, GRAPHVIZ_FUNCTIONS);

Result<const Graphviz*> graphviz() {
  static const Result<Graphviz> api = []() -> Result<Graphviz> {
    NFM_ASSIGN(SharedLibrary library, SharedLibrary::open("libgvc.so.6"));
    return Graphviz::bind(library);
  }();
  if (!api)
    return make_error(api.error().code,
                      "graphviz: " + api.error().message + " (install Debian's libgvc6)");
  return &*api;
}

}  // namespace

Result<std::string> render_graphviz(const std::string& dot, std::string_view format) {
  if (format != "svg" && format != "png")
    return make_error(Errc::invalid_argument,
                      "graphviz: no such picture format: " + std::string(format) + " (svg or png)");
  NFM_ASSIGN(const Graphviz* gv, graphviz());
  std::unique_ptr<GVC_t, decltype(gv->gvFreeContext)> gvc(gv->gvContext(), gv->gvFreeContext);
  if (!gvc) return make_error(Errc::io, "graphviz: gvContext failed");
  std::unique_ptr<Agraph_t, decltype(gv->agclose)> graph(gv->agmemread(dot.c_str()), gv->agclose);
  if (!graph) return make_error(Errc::bad_format, "graphviz: the DOT text did not parse");
  if (gv->gvLayout(gvc.get(), graph.get(), "dot") != 0)
    return make_error(Errc::io, "graphviz: layout failed (is the dot layout plugin installed?)");
  char* data = nullptr;
  unsigned int size = 0;
  const std::string fmt(format);
  const int rc = gv->gvRenderData(gvc.get(), graph.get(), fmt.c_str(), &data, &size);
  std::string out = rc == 0 && data ? std::string(data, size) : std::string();
  if (data) gv->gvFreeRenderData(data);
  gv->gvFreeLayout(gvc.get(), graph.get());
  if (rc != 0)
    return make_error(Errc::io, "graphviz: cannot render " + fmt + " (no renderer plugin for it)");
  return out;
}

}  // namespace nfm::topology
