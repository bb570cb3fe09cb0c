// idt_hook: every present gate of the interrupt descriptor table enters the
// kernel's own text (the exception and IRQ entry stubs). A rootkit that takes
// over an interrupt or exception (int 0x80, #PF, #BP) points a gate elsewhere.
// (Reserved vectors keep the boot-time handlers in the freed init text: the
// kernel's own, so allowed.)
// The gates' fields come from the guest's type (struct gate_struct).
#include <fmt/core.h>

#include "features/integrity/code_owners.h"
#include "features/integrity/integrity.h"
#include "kernel/kernel.h"
#include "kernel/object.h"

namespace nfm {

Result<CheckOutcome> check_idt_hooks(Kernel& kernel, const IntegrityOptions& options,
                                     std::vector<IntegrityFinding>& findings) {
  const ObjectContext ctx = fresh_reading(kernel);
  NFM_ASSIGN(CodeOwners owners, CodeOwners::read(kernel, ctx, options.max_modules));
  NFM_ASSIGN(uint64_t table, kernel.symbol("idt_table"));
  NFM_ASSIGN(TypeRef gate_type, kernel.types().find_struct("gate_struct"));
  NFM_ASSIGN(uint64_t gate_size, kernel.types().size_of(gate_type));
  auto field = [&](const Object& gate, const char* name) -> Result<uint64_t> {
    NFM_ASSIGN(Object f, gate.member(name));
    return f.as_unsigned();
  };
  size_t present = 0;
  for (uint64_t vector = 0; vector < 256; ++vector) {
    Object gate(ctx, table + vector * gate_size, gate_type);
    NFM_ASSIGN(uint64_t p, field(gate, "bits.p"));
    if (!p) continue;
    ++present;
    NFM_ASSIGN(uint64_t low, field(gate, "offset_low"));
    NFM_ASSIGN(uint64_t middle, field(gate, "offset_middle"));
    NFM_ASSIGN(uint64_t high, field(gate, "offset_high"));
    const uint64_t handler = low | middle << 16 | high << 32;
    if (owners.in_kernel_text(handler)) continue;
    const std::string owner = owners.owner_of(handler);
    const std::string function = function_name(kernel, owners, handler);
    findings.push_back(IntegrityFinding{
        .kind = "idt_hook",
        .severity = "critical",
        .summary = fmt::format("interrupt vector {:#04x} enters {} ({}), outside kernel text",
                               vector, function,
                               owner.empty()                  ? "no listed module"
                               : owner == CodeOwners::kKernel ? "kernel data"
                                                              : "module " + owner),
        .evidence = {{"vector", vector},
                     {"address", schema::hex_address(handler)},
                     {"points_to", function},
                     {"module", owner == CodeOwners::kKernel ? "" : owner}},
    });
  }
  CheckOutcome outcome;
  outcome.detail = fmt::format("{} gates in use", present);
  return outcome;
}

}  // namespace nfm
