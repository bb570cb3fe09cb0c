// nfm profile info | export: what nfm knows of a guest's kernel (identity, where
// its symbols and types came from, the profile cache), and that profile written
// as a Volatility 3 symbol table.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "frame/frame_json.h"
#include "kernel/profile/isf.h"

namespace nfm::app {

void register_profile(CLI::App& app) {
  CLI::App* profile = app.add_subcommand("profile", "Kernel profiles (symbols and types)");
  profile->require_subcommand(1);

  add_guest_command(*profile, "info", "Print the guest kernel's identity and profile sources",
                    [](Kernel& kernel, const TargetArgs& args) {
                      const KernelIdentity& id = kernel.identity();
                      nlohmann::json j = {{"release", id.release},
                                          {"banner", id.banner},
                                          {"build_id", id.build_id},
                                          {"symbols", id.symbols_source},
                                          {"types", id.types_source},
                                          {"symbol_count", kernel.symbols().size()},
                                          {"type_count", kernel.types().type_count()},
                                          {"cache", id.profile_cache}};
                      if (args.json) {
                        fmt::print("{}\n", dump_json(j));
                        return;
                      }
                      for (const auto& [k, v] : j.items())
                        fmt::print("{:<13} {}\n", k + ":",
                                   v.is_string() ? v.get<std::string>() : v.dump());
                    });

  auto out = std::make_shared<std::string>();
  CLI::App* exp = add_guest_command(
      *profile, "export", "Write the guest kernel's profile as a Volatility 3 ISF (.json[.xz])",
      [out](Kernel& kernel, const TargetArgs&) {
        // ISF addresses are link-time: undo this boot's KASLR shift.
        const SymbolTable linked =
            kernel.symbols().shifted(-static_cast<int64_t>(kernel.location().kaslr_offset));
        const KernelIdentity& id = kernel.identity();
        auto r = write_isf(*out, kernel.types(), linked, id.banner,
                           "symbols: " + id.symbols_source + "; types: " + id.types_source);
        if (!r) throw CLI::RuntimeError(report_error(*out + ": " + r.error().to_string()));
        fmt::print(stderr, "nfm: wrote {} ({} symbols, {} types) for {}\n", *out,
                   kernel.symbols().size(), kernel.types().type_count(), id.release);
      });
  // Here --isf names the output, not a profile source.
  exp->remove_option(exp->get_option("--isf"));
  exp->add_option("--isf", *out, "output file (.json, or .json.xz to compress)")->required();
}

}  // namespace nfm::app
