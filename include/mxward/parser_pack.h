// ParserPack and EventExtractor: turn SyslogMessages into typed mail Events.
//
// ParserPack is the compiled, immutable form of rules.d/parsers/*.toml: parsers routed by program
// name, a literal prefilter, an RE2::Set of anchored patterns and, per pattern, the captures that
// map to Event fields. Shared read-only between threads.
//
// EventExtractor is the stateful part, owned by one thread: Postfix queue-id correlation (so a
// delivery carries the sasl_user and client_ip of its submission), and folding the several lines
// Dovecot writes for one failed login into one event. Views in the Event point into the message's
// line or into the extractor's tables and are valid until the next Extract() call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/event.h"
#include "mxward/status.h"
#include "mxward/syslog_message.h"

namespace mxward {

class ParserPack {
 public:
  // Loads every *.toml in the given directories (or files). On errors, fills diagnostics with
  // file:line:col and returns InvalidArgument.
  static Result<std::shared_ptr<const ParserPack>> Load(const std::vector<std::string>& paths,
                                                        std::vector<Diagnostic>* diagnostics);
  virtual ~ParserPack() = default;

  // Stateless match of one message. Returns true and fills *event on a match.
  virtual bool Parse(const SyslogMessage& msg, Event* event) const = 0;
  virtual std::size_t parser_count() const = 0;
  virtual std::vector<std::string> parser_names() const = 0;
};

struct EventExtractorOptions {
  std::size_t queue_id_capacity = 200'000;  // correlation table size cap (evicts oldest)
  std::int64_t queue_id_ttl_seconds = 3 * 86400;
};

struct ExtractorStats {
  std::uint64_t messages = 0;
  std::uint64_t events = 0;
  std::uint64_t unmatched = 0;
  std::uint64_t folded = 0;               // lines merged into an earlier event (Dovecot)
  std::uint64_t queue_ids = 0;            // current correlation table size
  std::uint64_t queue_id_evictions = 0;
};

class EventExtractor {
 public:
  static std::unique_ptr<EventExtractor> Create(std::shared_ptr<const ParserPack> pack,
                                                const EventExtractorOptions& options = {});
  virtual ~EventExtractor() = default;
  // Returns true when msg yielded an event (after folding and correlation).
  virtual bool Extract(const SyslogMessage& msg, Event* event) = 0;
  virtual const ExtractorStats& stats() const = 0;
};

}  // namespace mxward
