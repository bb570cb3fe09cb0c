// The integrity feature: the rootkit checks' findings as a frame section.
#include "features/feature.h"

#include "features/integrity/integrity.h"

namespace nfm {

const schema::Fields<IntegrityFinding>& integrity_fields() {
  using schema::Column;
  using schema::field;
  using schema::json;
  using R = IntegrityFinding;
  static const schema::Fields<IntegrityFinding> fields{{
      field("kind", &R::kind,
            "hidden_process, hidden_module, hidden_socket, syscall_hook, idt_hook, proc_hook, "
            "ftrace_hook or kprobe "
            "(docs/check.md)"),
      field("severity", &R::severity, "warning or critical"),
      field("summary", &R::summary, "one line: what is hidden or hooked, and how it was seen"),
      // An object in JSON; stores keep it as JSON text, which reads back the same.
      schema::custom_field<R>(
          Column{.name = "evidence",
                 .type = schema::Type::text,
                 .doc = "an object: pid/comm, module or slot, addresses as hex strings, the "
                        "views that saw it (seen_in) and those that did not (missing_from)"},
          [](const R& r) { return r.evidence; },
          [](R& r, const json& v, const std::string& path) {
            json value = v;
            if (v.is_string()) {
              value = json::parse(v.get<std::string>(), nullptr, /*allow_exceptions=*/false);
              if (value.is_discarded()) schema::fail(path, "evidence is not JSON text");
            }
            r.evidence = schema::read_object(value, path);
          }),
  }};
  return fields;
}

NFM_FEATURE(integrity) {
  FeatureInfo f{.name = "integrity",
                .doc = "rootkit checks: what the kernel's views of one thing disagree on",
                .order = 200};
  set_rows_codec(f, &IntegrityReport::findings, integrity_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    auto r = run_integrity_checks(ctx.kernel(), ctx.options<IntegrityOptions>("integrity"));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    // A check that could not decide is an error count of the section: a frame
    // consumer sees that "no rows" did not mean "clean".
    uint64_t inconclusive = 0;
    for (const IntegrityCheck& c : r->checks) inconclusive += c.status == "inconclusive";
    status.count_error("inconclusive_checks", inconclusive);
    status.rows = r->findings.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
