// nfm query: SQL over every VM, live or stored (query/). One statement as the last
// argument, a script on stdin, or a prompt with line editing on a terminal.
#include <editline/readline.h>
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/guest_crawl.h"
#include "apps/many_vms.h"
#include "apps/shell_console.h"
#include "crawler/vm_set.h"
#include "query/query_engine.h"

namespace nfm::app {

namespace {

using query::QueryResult;
using query::SqlValue;

enum class OutputFormat { table, csv, json };

struct QueryArgs {
  std::vector<std::string> words;  // TARGET... then SQL
  ManyVmArgs vms;
  bool json = false, csv = false, table = false, timer = false;
};

std::string text_of(const SqlValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return "";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return std::get<std::string>(v);
}

void print_table(const QueryResult& r) {
  std::vector<size_t> width(r.columns.size());
  for (size_t i = 0; i < r.columns.size(); ++i) width[i] = r.columns[i].size();
  for (const auto& row : r.rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], text_of(row[i]).size());
  std::string rule = "+";
  for (size_t w : width) rule += std::string(w + 2, '-') + "+";
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = "|";
    for (size_t i = 0; i < cells.size(); ++i) out += fmt::format(" {:<{}} |", cells[i], width[i]);
    std::puts(out.c_str());
  };
  std::puts(rule.c_str());
  line(r.columns);
  std::puts(rule.c_str());
  for (const auto& row : r.rows) {
    std::vector<std::string> cells;
    cells.reserve(row.size());
    for (const SqlValue& v : row) cells.push_back(text_of(v));
    line(cells);
  }
  if (!r.rows.empty()) std::puts(rule.c_str());
}

// RFC 4180: quoted when it holds a comma, a quote or a line break.
std::string csv_cell(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void print_csv(const QueryResult& r) {
  auto line = [](const auto& cells, auto&& text) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_cell(text(cells[i]));
    std::puts(out.c_str());
  };
  line(r.columns, [](const std::string& s) { return s; });
  for (const auto& row : r.rows) line(row, text_of);
}

void print_json(const QueryResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    nlohmann::json object = nlohmann::json::object();
    for (size_t i = 0; i < row.size(); ++i) {
      nlohmann::json& cell = object[r.columns[i]];
      std::visit(
          [&cell](const auto& v) {
            if constexpr (!std::is_same_v<std::decay_t<decltype(v)>, std::monostate>) cell = v;
          },
          row[i]);
    }
    rows.push_back(std::move(object));
  }
  std::puts(rows.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

void print_result(const QueryResult& r, OutputFormat format) {
  switch (format) {
    case OutputFormat::table:
      return print_table(r);
    case OutputFormat::csv:
      return print_csv(r);
    case OutputFormat::json:
      return print_json(r);
  }
}

// Runs `sql`; prints each result and the statement's warnings (and with `timer`, what
// it cost on stderr). False on an SQL error.
bool run_sql(query::QueryEngine& engine, const std::string& sql, OutputFormat format, bool timer) {
  const size_t records_before = engine.source().records().size();
  const auto start = std::chrono::steady_clock::now();
  auto results = engine.run(sql);
  if (timer) {
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const auto& records = engine.source().records();
    double crawl_ms = 0;
    for (size_t i = records_before; i < records.size(); ++i)
      crawl_ms += static_cast<double>(records[i].status.duration_ns) / 1e6;
    std::fprintf(stderr, "nfm: time: %.3f ms, of which %zu crawls %.3f ms\n", ms,
                 records.size() - records_before, crawl_ms);
  }
  for (const std::string& w : engine.source().warnings())
    std::fprintf(stderr, "nfm: warning: %s\n", w.c_str());
  if (!results) {
    report_error(results.error().message);
    return false;
  }
  for (const QueryResult& r : *results) print_result(r, format);
  std::fflush(stdout);
  return true;
}

constexpr const char* kPromptHelp =
    "Statements end with ';'. Tables: osquery's (processes, process_open_files,\n"
    "process_open_sockets, listening_ports, process_memory_map, kernel_modules,\n"
    "interface_addresses, interface_details, os_version, system_info, uptime,\n"
    "memory_info, cpu_info), kernel_log, frames, and nfm_FEATURE for each frame section.\n"
    ".tables          every table with its columns\n"
    ".mode table|csv|json\n"
    ".timer on|off    print each statement's time and its crawls' on stderr\n"
    ".quit            (or Ctrl-D)\n";

// The prompt on a terminal, else the lines of stdin: statements may span lines and
// run one at a time as each is complete; dot commands are one line. The status is 1
// when a statement failed (scripts).
int run_lines(query::QueryEngine& engine, OutputFormat format, bool timer, bool interactive) {
  if (interactive) {
    std::printf("nfm query: %zu VM snapshot(s). Type .help.\n", engine.source().snapshots().size());
    rl_readline_name = const_cast<char*>("nfm");
  }
  std::string pending;
  bool ok = true;
  while (true) {
    std::string line;
    if (interactive) {
      char* raw = readline(pending.empty() ? "nfm> " : "...> ");
      if (!raw) {
        std::printf("\n");
        return 0;
      }
      line = raw;
      std::free(raw);
    } else if (!std::getline(std::cin, line)) {
      if (pending.find_first_not_of(" \t\n") != std::string::npos)
        ok = run_sql(engine, pending, format, timer) && ok;
      return ok ? 0 : 1;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (interactive) add_history(line.c_str());
    if (pending.empty() && line[0] == '.') {
      if (line == ".quit" || line == ".exit") return ok ? 0 : 1;
      if (line == ".help") {
        std::printf("%s", kPromptHelp);
      } else if (line == ".tables") {
        auto tables = engine.tables();
        if (!tables)
          report_error(tables.error().to_string());
        else
          for (const auto& [name, columns] : *tables)
            std::printf("%s (%s)\n", name.c_str(), columns.c_str());
      } else if (line == ".timer on" || line == ".timer off") {
        timer = line == ".timer on";
      } else if (line.rfind(".mode ", 0) == 0) {
        const std::string mode = line.substr(6);
        if (mode == "table")
          format = OutputFormat::table;
        else if (mode == "csv")
          format = OutputFormat::csv;
        else if (mode == "json")
          format = OutputFormat::json;
        else
          report_error("unknown mode '" + mode + "' (table, csv or json)");
      } else {
        report_error("unknown command '" + line + "' (.help lists them)");
      }
      continue;
    }
    pending += line + "\n";
    if (!sqlite3_complete(pending.c_str())) continue;
    ok = run_sql(engine, pending, format, timer) && ok;
    pending.clear();
  }
}

Result<std::unique_ptr<query::SnapshotSource>> open_source(
    const QueryArgs& args, const std::vector<std::string>& targets) {
  const ManyVmArgs& vms = args.vms;
  if (!vms.store.empty()) {
    NFM_ASSIGN(FrameSelection selection, parse_frame_selection(vms.at, vms.since, vms.until));
    return query::open_stored(vms.store, selection);
  }
  return query::open_live(vm_set_options(vms, targets), crawl_budget(vms.budget));
}

}  // namespace

void register_query(CLI::App& app) {
  auto args = std::make_shared<QueryArgs>();
  CLI::App* cmd = app.add_subcommand(
      "query", "SQL over every VM, live or stored, with osquery's tables (docs/query.md)");
  cmd->footer(
      "The SQL is the last argument (quote it: it has spaces); the others are TARGETs\n"
      "(qemu:PID, qemu:NAME, memory images; none: every QEMU VM on this host). Without SQL:\n"
      "a prompt on a terminal, else the statements on stdin. Every table has vm, host and\n"
      "time (ns since the epoch) first; WHERE vm = '...' reads only that VM.\n"
      "Examples:\n"
      "  nfm query \"SELECT vm, pid, name FROM processes WHERE name LIKE 'ssh%'\"\n"
      "  nfm query --store sqlite:/var/lib/nfm/frames.db --at -1h \\\n"
      "    \"SELECT p.vm, p.name, l.port FROM processes p JOIN listening_ports l USING (vm, "
      "pid)\"\n"
      "Exit status: 0 done; 1 an error (bad SQL, no VM), or a VM or feature that could not\n"
      "be read (a warning names it; its rows are missing from the results).");
  cmd->add_option("TARGET_OR_SQL", args->words, "TARGET... then the SQL");
  cmd->add_flag("--json", args->json, "an array of row objects per statement");
  cmd->add_flag("--csv", args->csv, "comma-separated values with a header line");
  cmd->add_flag("--table", args->table,
                "an aligned table (the default on a terminal; CSV otherwise)");
  cmd->add_flag("--timer", args->timer,
                "print each run's time and its crawls' time on stderr (.timer on at the prompt)");
  add_many_vm_options(*cmd, args->vms);
  cmd->callback([args] {
    if (args->json + args->csv + args->table > 1)
      throw CLI::RuntimeError(report_error("query: give one of --json, --csv and --table"));
    OutputFormat format = isatty(STDOUT_FILENO) ? OutputFormat::table : OutputFormat::csv;
    if (args->json) format = OutputFormat::json;
    if (args->csv) format = OutputFormat::csv;
    if (args->table) format = OutputFormat::table;
    std::vector<std::string> targets = args->words;
    std::string sql;
    if (!targets.empty() && targets.back().find_first_of(" \t\n") != std::string::npos) {
      sql = targets.back();
      targets.pop_back();
    }
    if (!args->vms.store.empty() && !targets.empty())
      throw CLI::RuntimeError(report_error(fmt::format(
          "query: give either TARGETs or --store, not both ('{}' is not SQL: SQL has spaces)",
          targets.front())));
    check_many_vm_options("query", args->vms, targets);
    auto source = open_source(*args, targets);
    if (!source) throw CLI::RuntimeError(report_error(source.error().to_string()));
    auto engine = query::QueryEngine::open(std::move(source).value());
    if (!engine) throw CLI::RuntimeError(report_error(engine.error().to_string()));
    if (sql.empty()) {
      const int status = run_lines(**engine, format, args->timer, isatty(STDIN_FILENO));
      if (status || (*engine)->source().any_failed()) throw CLI::RuntimeError(1);
      return;
    }
    if (!run_sql(**engine, sql, format, args->timer)) throw CLI::RuntimeError(1);
    // Rows of a VM or feature that could not be read are missing: say so in the status.
    if ((*engine)->source().any_failed()) throw CLI::RuntimeError(1);
  });
}

}  // namespace nfm::app
