// The topology in the forms people and programs read: text grouped by VM, JSON
// with stable ids, Graphviz DOT, and pictures (SVG, PNG) that graphviz lays out.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "topology/graph.h"
#include "util/result.h"

namespace nfm::topology {

// One line per service and per edge, under the VM they belong to; `history` adds
// when each was seen (graphs made from many frames).
std::string graph_text(const Graph& g, bool history = false);
// {"nodes": [{"id", "kind": "vm"|"service"|"process"|"external", ...}], "edges": [...]}
nlohmann::json graph_json(const Graph& g);
// VMs as clusters holding their services and processes, edges labelled with ports.
std::string graph_dot(const Graph& g);

std::string diff_text(const GraphDiff& d);
nlohmann::json diff_json(const GraphDiff& d);

// `dot` laid out and rendered by graphviz's library (libgvc, loaded on first use):
// format "svg" or "png".
Result<std::string> render_graphviz(const std::string& dot, std::string_view format);

}  // namespace nfm::topology
