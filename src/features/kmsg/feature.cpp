// The kmsg feature: its columns and its place in the frame.
#include "features/feature.h"
#include "features/kmsg/kmsg.h"

namespace nfm {

namespace {

// "T123" (thread) or "C0" (cpu): KmsgRecord::caller() backwards.
uint32_t parse_caller(const std::string& text, const std::string& path) {
  if (text.size() < 2 || (text[0] != 'T' && text[0] != 'C'))
    schema::fail(path, fmt::format("'{}' is not T<tid> or C<cpu>", text));
  const uint64_t n = schema::parse_number(text.substr(1), path, "", 10);
  if (n > 0x7fffffff) schema::fail(path, fmt::format("'{}' is out of range", text));
  return static_cast<uint32_t>(text[0] == 'C' ? (n | 0x80000000u) : n);
}

}  // namespace

const schema::Fields<KmsgRecord>& kmsg_fields() {
  using schema::Column;
  using schema::field;
  using schema::json;
  using R = KmsgRecord;
  static const schema::Fields<KmsgRecord> fields{
      {
          field("seq", &R::seq, "the record's sequence number"),
          field("ts_ns", &R::ts_ns, "local_clock() at printk time, since boot", "ns"),
          field("level", &R::level, "syslog level 0-7"),
          field("facility", &R::facility, "syslog facility (0 = kernel)"),
          schema::custom_field<R>(
              Column{.name = "caller",
                     .type = schema::Type::text,
                     .doc = "T<tid> (a thread) or C<cpu>, as PRINTK_CALLER prints it"},
              [](const R& r) { return json(r.caller()); },
              [](R& r, const json& v, const std::string& path) {
                r.caller_id = parse_caller(schema::read_string(v, path), path);
              }),
          field("text", &R::text, "the message (may hold newlines)"),
          schema::optional_field("subsystem", &R::subsystem, std::string(),
                                 "dev_printk SUBSYSTEM, when set"),
          schema::optional_field("device", &R::device, std::string(), "dev_printk DEVICE, when set"),
      },
      // Only finished records are written to frames.
      [](R& r) { r.finalized = true; }};
  return fields;
}

NFM_FEATURE(kmsg) {
  FeatureInfo f{.name = "kmsg",
                .aliases = {"dmesg"},
                .doc = "every record of the kernel log ring buffer",
                .order = 70};
  set_rows_codec(f, &KmsgLog::records, kmsg_fields());
  f.crawl = [](CrawlContext& ctx, FeatureStatus& status) -> std::any {
    KmsgReader* reader = feature_reader<KmsgReader>(ctx, "kmsg", status);
    if (!reader) return {};
    auto r = reader->read(ctx.options<KmsgOptions>("kmsg"));
    if (!r) {
      status.error = r.error().to_string();
      return {};
    }
    // A record a writer is still busy with, or whose text the ring already
    // overwrote, is the log working as designed; torn or unreadable ones are ours.
    status.count_skipped("in_flight", r->in_flight);
    status.count_skipped("lost", r->lost);
    status.count_error("torn", r->torn);
    status.count_error("unreadable", r->unreadable);
    status.rows = r->records.size();
    return std::move(*r);
  };
  return f;
}

}  // namespace nfm
