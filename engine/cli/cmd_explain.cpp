// `mxward explain FILE|-`: what the parser pack makes of each line, like fail2ban-regex.
//
// Per recognised line: the parser and pattern, the event and its fields, or why it yields none
// (folded into another line's event, or a line kept for correlation only); then a summary: lines,
// recognised per parser, events per type, unmatched lines per program, time taken. `--jsonl`
// writes one JSON object per input line instead (summary to stderr); `--unmatched` lists only the
// lines no parser took, to help write new parsers. `--unknown` groups the lines of programs a
// parser knows that no pattern recognised by shape (line_shape.h), with counts and one redacted
// example each: what a user can send us without leaking their users.
//
// "matched" means the line is an abuse signal a shipped playbook counts: PlaybookEngine::Watches
// when the playbooks of the rule dirs load; otherwise (no playbooks, or errors in them, which are
// reported) a built-in list of abuse event types, said so in the summary.
#include <sys/stat.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/commands.h"
#include "engine/cli/engine_assembly.h"
#include "engine/cli/line_shape.h"
#include "mxward/parser_pack.h"
#include "mxward/playbook_engine.h"
#include "mxward/syslog_parser.h"

namespace mxward::cli {

namespace {

std::string Joined(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

struct ExplainOptions {
  std::string file;
  bool jsonl = false;
  bool unmatched = false;
  bool unknown = false;
  std::string format = "syslog";
  std::vector<std::string> parser_dirs;
};

// The fallback notion of "an abuse signal", used when no playbook engine is available.
bool BuiltinAbuseSignal(const Event& e) {
  switch (e.type) {
    case EventType::kAuthFailure:
    case EventType::kRblReject:
    case EventType::kRelayDenied:
    case EventType::kUnknownRecipient:
    case EventType::kHeloReject:
    case EventType::kSenderReject:
    case EventType::kProtocolAbuse:
    case EventType::kVirusFound:
    case EventType::kRateLimited:
      return true;
    default:
      return false;
  }
}

std::string_view OutcomeName(ExtractOutcome::Kind k) {
  switch (k) {
    case ExtractOutcome::kEvent:
      return "event";
    case ExtractOutcome::kNoEvent:
      return "no_event";
    case ExtractOutcome::kFolded:
      return "folded";
    case ExtractOutcome::kHeld:
      return "held";
    case ExtractOutcome::kUnmatched:
      return "unmatched";
  }
  return "unmatched";
}

std::string FieldsText(const Event& e) {
  std::string out;
  if (e.client_ip.valid()) out += " ip=" + e.client_ip.ToString();
  for (int i = 0; i < kFieldCount; ++i) {
    const auto f = static_cast<Field>(i);
    if (f == Field::kClientIp || !e.has(f)) continue;
    out += fmt::format(" {}={}", FieldName(f), nlohmann::json(std::string(e.get(f))).dump());
  }
  return out;
}

void RunExplain(const GlobalOptions& globals, const ExplainOptions& opts) {
  Config config = LoadEffectiveConfig(globals);
  const std::vector<std::string> dirs =
      opts.parser_dirs.empty() ? ParserDirs(config) : opts.parser_dirs;
  auto pack = LoadParserPackOrExit(dirs, config);

  // Playbooks decide "matched"; explain still works without them.
  std::unique_ptr<PlaybookEngine> playbooks;
  std::string matched_basis = "built-in list of abuse event types (no playbooks loaded)";
  {
    std::vector<Diagnostic> diags;
    auto engine = PlaybookEngine::Load(config, &diags);
    if (engine.ok() && (*engine)->playbook_count() > 0) {
      playbooks = std::move(*engine);
      matched_basis = fmt::format("{} playbook(s) from the rule dirs", playbooks->playbook_count());
    } else if (!engine.ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      std::fprintf(stderr,
                   "mxward: playbooks not loaded (%s): \"matched\" uses the built-in list\n",
                   engine.status().message().c_str());
    }
  }

  std::ifstream file;
  std::istream* in = &std::cin;
  UnixMicros reference = SystemClock::Instance()->Now();
  if (opts.file != "-") {
    file.open(opts.file, std::ios::binary);
    if (!file) throw CliExit(kExitUsage, "cannot open " + opts.file);
    struct stat st {};
    // Year-less times are placed near the file's last write, as replay does.
    if (::stat(opts.file.c_str(), &st) == 0) {
      reference = static_cast<UnixMicros>(st.st_mtime) * kMicrosPerSecond;
    }
    in = &file;
  }

  LogFormat format = LogFormat::kSyslog;
  if (!ParseLogFormat(opts.format, &format)) {
    throw CliExit(kExitUsage, "--format must be syslog, dovecot-log, roundcube-log or clamd-log");
  }
  struct Shape {
    std::uint64_t count = 0;
    std::string example;
  };
  std::map<std::pair<std::string, std::string>, Shape> unknown_shapes;  // (program label, shape)
  std::uint64_t unknown_lines = 0;
  const std::vector<std::string> labels = pack->program_labels();
  const SyslogParser syslog;
  auto extractor = EventExtractor::Create(pack);
  std::map<std::string, std::uint64_t> by_parser, by_type, unmatched_by_program;
  std::uint64_t lines = 0, malformed = 0, matched = 0;
  std::string line;
  Event event;
  std::string out;
  const auto started = std::chrono::steady_clock::now();
  // Held lines (fold = "held") whose counting line did not come: counted as their own events.
  Event released;
  auto count_released = [&] {
    while (extractor->NextReleased(&released)) {
      ++by_type[std::string(EventTypeName(released.type))];
      const bool watched = playbooks ? playbooks->Watches(released) : BuiltinAbuseSignal(released);
      if (watched) ++matched;
      if (opts.jsonl && !opts.unmatched) {
        // Not an input line: an earlier held line counted now (line_no: the line that ended
        // its hold, or the last one at the end of the input).
        nlohmann::json j;
        j["line_no"] = lines;
        j["matched"] = watched;
        if (playbooks) j["playbooks"] = playbooks->WatchingPlaybooks(released);
        j["event"] = std::string(EventTypeName(released.type));
        j["ip"] = released.client_ip.valid() ? nlohmann::json(released.client_ip.ToString())
                                             : nlohmann::json(nullptr);
        std::string_view user = released.get(Field::kSaslUser);
        if (user.empty()) user = released.get(Field::kUser);
        j["user"] = !user.empty() ? nlohmann::json(std::string(user)) : nullptr;
        j["outcome"] = "released";
        j["parser"] = std::string(released.parser);
        j["weight"] = released.weight;
        for (int i = 0; i < kFieldCount; ++i) {
          const auto f = static_cast<Field>(i);
          if (f == Field::kClientIp || !released.has(f)) continue;
          j[std::string(FieldName(f))] = std::string(released.get(f));
        }
        j["evidence"] = std::string(released.line);
        std::puts(j.dump().c_str());
      }
    }
  };

  while (std::getline(*in, line)) {
    ++lines;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    SyslogMessage msg;
    const bool is_syslog = syslog.Parse(line, reference, &msg, format).ok();
    if (!is_syslog) {
      ++malformed;
      if (opts.unknown) continue;
      if (opts.jsonl) {
        nlohmann::json j = {{"line_no", lines}, {"matched", false}, {"event", nullptr},
                            {"ip", nullptr},    {"user", nullptr},  {"outcome", "malformed"}};
        if (opts.unmatched) j["line"] = line;
        std::puts(j.dump().c_str());
      } else if (opts.unmatched) {
        std::printf("%6llu (not syslog) %s\n", static_cast<unsigned long long>(lines),
                    line.c_str());
      }
      continue;
    }
    if (!msg.has_time) msg.time = reference;
    reference = msg.time;
    const bool has_event = extractor->Extract(msg, &event);
    const ExtractOutcome& outcome = extractor->last_outcome();
    const bool is_match =
        has_event && (playbooks ? playbooks->Watches(event) : BuiltinAbuseSignal(event));
    // Which playbooks count it: what a person asks next about a counted line.
    const std::vector<std::string_view> counting = is_match && playbooks
                                                       ? playbooks->WatchingPlaybooks(event)
                                                       : std::vector<std::string_view>{};
    if (outcome.pattern != nullptr) {
      ++by_parser[outcome.pattern->parser];
    } else {
      ++unmatched_by_program[std::string(msg.program.empty() ? "(none)" : msg.program)];
    }
    if (has_event) ++by_type[std::string(EventTypeName(event.type))];
    if (is_match) ++matched;
    count_released();

    if (opts.unknown) {
      const int label = pack->ProgramLabel(msg.program);
      if (outcome.pattern != nullptr || label < 0 ||
          static_cast<std::size_t>(label) >= labels.size())
        continue;
      ++unknown_lines;
      Shape& shape =
          unknown_shapes[{labels[static_cast<std::size_t>(label)], LineShape(msg.message)}];
      if (shape.count++ == 0) shape.example = RedactLine(msg.message);
      continue;
    }

    if (opts.unmatched) {
      if (outcome.pattern != nullptr) continue;
      if (opts.jsonl) {
        nlohmann::json j = {{"line_no", lines},
                            {"outcome", "unmatched"},
                            {"program", std::string(msg.program)},
                            {"message", std::string(msg.message)},
                            {"line", line}};
        std::puts(j.dump().c_str());
      } else {
        std::printf("%6llu %s\n", static_cast<unsigned long long>(lines), line.c_str());
      }
      continue;
    }
    if (opts.jsonl) {
      nlohmann::json j;
      j["line_no"] = lines;
      j["matched"] = is_match;
      if (playbooks) j["playbooks"] = counting;
      const bool show = outcome.pattern != nullptr;  // folded/no-event lines show what was read
      j["event"] = has_event ? nlohmann::json(std::string(EventTypeName(event.type))) : nullptr;
      j["ip"] = show && event.client_ip.valid() ? nlohmann::json(event.client_ip.ToString())
                                                : nlohmann::json(nullptr);
      std::string_view user = event.get(Field::kSaslUser);
      if (user.empty()) user = event.get(Field::kUser);
      j["user"] = show && !user.empty() ? nlohmann::json(std::string(user)) : nullptr;
      j["outcome"] = OutcomeName(outcome.kind);
      j["program"] = std::string(msg.program);
      if (show) {
        j["parser"] = outcome.pattern->parser;
        j["pattern"] = outcome.pattern->name;
        if (!has_event) j["would_be"] = std::string(EventTypeName(event.type));
        j["weight"] = event.weight;
        for (int i = 0; i < kFieldCount; ++i) {
          const auto f = static_cast<Field>(i);
          if (f == Field::kClientIp || !event.has(f)) continue;
          j[std::string(FieldName(f))] = std::string(event.get(f));
        }
        if (event.client_ip.valid()) j["client_ip"] = event.client_ip.ToString();
      }
      std::puts(j.dump().c_str());
      continue;
    }
    if (outcome.pattern == nullptr) continue;
    const std::string where = outcome.pattern->parser + "/" + outcome.pattern->name;
    switch (outcome.kind) {
      case ExtractOutcome::kEvent:
        out = fmt::format(
            "{:>6} {} -> {}{}{}{}\n       {}\n", lines, where, EventTypeName(event.type),
            event.weight != 1 ? fmt::format(" weight={}", event.weight) : "", FieldsText(event),
            is_match ? (counting.empty() ? std::string("  [counted]")
                                         : fmt::format("  [counted by {}]", Joined(counting)))
                     : std::string(),
            line);
        break;
      case ExtractOutcome::kFolded:
        out = fmt::format("{:>6} {} -> folded: {} counted on another line{}\n       {}\n", lines,
                          where, EventTypeName(event.type), FieldsText(event), line);
        break;
      case ExtractOutcome::kHeld:
        out = fmt::format(
            "{:>6} {} -> held: {} counted by its login line, or here if none follows{}\n"
            "       {}\n",
            lines, where, EventTypeName(event.type), FieldsText(event), line);
        break;
      default:
        out = fmt::format("{:>6} {} -> no event (recognised){}\n       {}\n", lines, where,
                          FieldsText(event), line);
        break;
    }
    std::fputs(out.c_str(), stdout);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  extractor->ReleaseAll();
  count_released();
  if (opts.unknown) {
    std::vector<std::pair<const std::pair<std::string, std::string>*, const Shape*>> sorted;
    for (const auto& [key, shape] : unknown_shapes) sorted.emplace_back(&key, &shape);
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.second->count != b.second->count ? a.second->count > b.second->count
                                                : *a.first < *b.first;
    });
    if (!opts.jsonl) {
      std::printf(
          "Lines of known programs that no pattern recognised: %llu, in %zu shapes\n"
          "(addresses, user names, mail addresses and session ids replaced in the examples; "
          "numbers and queue ids too in the shapes; check before sending)\n",
          static_cast<unsigned long long>(unknown_lines), sorted.size());
    }
    for (const auto& [key, shape] : sorted) {
      if (opts.jsonl) {
        nlohmann::json j = {{"program", key->first},
                            {"shape", key->second},
                            {"count", shape->count},
                            {"example", shape->example}};
        std::puts(j.dump().c_str());
      } else {
        std::printf("%8llu  %s  %s\n          e.g. %s\n",
                    static_cast<unsigned long long>(shape->count), key->first.c_str(),
                    key->second.c_str(), shape->example.c_str());
      }
    }
  }

  const auto& st = extractor->stats();
  std::string summary;
  summary += fmt::format(
      "\nLines: {} (not syslog: {}); recognised: {}; events: {}; folded: {}; unmatched: {}\n",
      lines, malformed, st.messages - st.unmatched, st.events, st.folded, st.unmatched);
  if (st.held > 0) {
    summary += fmt::format("Held for their login line: {}; counted on their own (none came): {}\n",
                           st.held, st.released);
  }
  summary += fmt::format("Matched (abuse signals counted by {}): {}\n", matched_basis, matched);
  auto section = [&](const char* title, const std::map<std::string, std::uint64_t>& m) {
    if (m.empty()) return;
    std::vector<std::pair<std::uint64_t, std::string>> v;
    for (const auto& [k, n] : m) v.emplace_back(n, k);
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    summary += title;
    for (const auto& [n, k] : v) summary += fmt::format("  {:>10}  {}\n", n, k);
  };
  section("Recognised per parser:\n", by_parser);
  section("Events per type:\n", by_type);
  section("Unmatched per program:\n", unmatched_by_program);
  summary +=
      fmt::format("Queue ids tracked: {} (evicted: {})\n", st.queue_ids, st.queue_id_evictions);
  summary += fmt::format("Time: {:.3f} s ({:.0f} lines/s)\n", seconds,
                         seconds > 0 ? static_cast<double>(lines) / seconds : 0.0);
  std::fflush(stdout);
  std::fputs(summary.c_str(), opts.jsonl || opts.unmatched || opts.unknown ? stderr : stdout);
}

}  // namespace

void AddExplainCommand(CLI::App& app, GlobalOptions& globals) {
  auto opts = std::make_shared<ExplainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "explain",
      "Show what the parser pack extracts from each line of a log (like fail2ban-regex)");
  cmd->add_option("file", opts->file, "log file, or - for standard input")->required();
  cmd->add_flag("--jsonl", opts->jsonl,
                "one JSON object per input line: line_no, matched, event, ip, user, fields");
  cmd->add_flag("--unmatched", opts->unmatched, "list only the lines no parser recognised");
  cmd->add_flag("--unknown", opts->unknown,
                "lines of known programs no pattern recognised, grouped by shape, with counts "
                "and one redacted example each (addresses and user names replaced)");
  cmd->add_option("--format", opts->format,
                  "how the file is written: syslog (default; also recognises Dovecot log_path "
                  "and Roundcube lines), dovecot-log, roundcube-log, clamd-log");
  cmd->add_option("--parsers", opts->parser_dirs,
                  "parser directory or file, repeatable (default: <rules dir>/parsers)");
  cmd->callback([&globals, opts] { RunExplain(globals, *opts); });
}

}  // namespace mxward::cli
