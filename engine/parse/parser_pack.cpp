// ParserPack: compiles rules.d/parsers/*.toml once; matches one SyslogMessage at a time.
//
// Per line: route by program name to one parser (per-thread cache), pick the parser's pattern set
// for the program's last component ("smtpd"), keep the members that can start with the message's
// first byte (a table built at load), then try those in file order. Template
// patterns are matched directly (literal compares, no backtracking). For regex patterns, the
// literal prefilter decides whether the set's RE2::Set runs at all (one DFA pass, anchored at the
// start, once per line), and only the pattern that hit runs again with captures. Nothing on the
// path of a line no regex literal occurs in allocates; a regex hit allocates only inside
// RE2::Set::Match's result set. docs/parsers.md has the file format and the measured costs.
#include "mxward/parser_pack.h"

#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cctype>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <re2/re2.h>
#include <re2/set.h>
#include <toml++/toml.h>

#include "engine/base/settings_reader.h"
#include "mxward/config.h"
#include "mxward/syslog_parser.h"

namespace mxward {
namespace {

constexpr int kMaxGroups = 32;  // capture groups per pattern, including group 0
constexpr std::uint32_t kMaxWeight = 100'000;

// a[0, n) == b[0, n), for the short literals of templates: eight bytes at a time and an
// overlapping last word, no call (memcmp's call and dispatch cost more than the compare here).
inline bool SameBytes(const char* a, const char* b, std::size_t n) {
  if (n < 8) {
    for (std::size_t k = 0; k < n; ++k) {
      if (a[k] != b[k]) return false;
    }
    return true;
  }
  std::uint64_t x, y;
  std::size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    std::memcpy(&x, a + k, 8);
    std::memcpy(&y, b + k, 8);
    if (x != y) return false;
  }
  if (k == n) return true;
  std::memcpy(&x, a + n - 8, 8);
  std::memcpy(&y, b + n - 8, 8);
  return x == y;
}

// A literal with its Horspool shift table, built once at load. glibc's memmem pays a setup per
// call (~350 instructions on a mail log line, measured with callgrind) and string_view::find
// calls memcmp at every occurrence of the literal's first byte (a blank, often); with the table
// a search looks at about one byte in (literal length) and compares only where the literal's
// last byte is. Shifts are capped at 255, which only shortens a skip. Horspool tries the
// alignments left to right and skips only ones that cannot match: it finds the first occurrence.
struct ShiftedLiteral {
  std::string text;
  std::array<std::uint8_t, 256> shift{};

  ShiftedLiteral() = default;
  explicit ShiftedLiteral(std::string t) : text(std::move(t)) {
    const std::size_t m = text.size();
    shift.fill(static_cast<std::uint8_t>(std::min<std::size_t>(m, 255)));
    for (std::size_t k = 0; k + 1 < m; ++k) {
      shift[static_cast<unsigned char>(text[k])] =
          static_cast<std::uint8_t>(std::min<std::size_t>(m - 1 - k, 255));
    }
  }

  // The first occurrence at or after `from`, or npos.
  std::size_t Find(std::string_view hay, std::size_t from) const {
    const std::size_t m = text.size();
    if (m == 0) return from <= hay.size() ? from : std::string_view::npos;
    if (hay.size() < m) return std::string_view::npos;
    const char* h = hay.data();
    const char* n = text.data();
    const char last = n[m - 1];
    for (std::size_t i = from; i + m <= hay.size();) {
      const char c = h[i + m - 1];
      if (c == last && std::memcmp(h + i, n, m - 1) == 0) return i;
      i += shift[static_cast<unsigned char>(c)];
    }
    return std::string_view::npos;
  }
  // The last occurrence that starts at or after `from`, or npos (string_view::rfind called
  // memcmp at every position from the end).
  std::size_t RFind(std::string_view hay, std::size_t from) const {
    const std::size_t m = text.size();
    if (m == 0) return hay.size() >= from ? hay.size() : std::string_view::npos;
    if (hay.size() < m || hay.size() - m < from) return std::string_view::npos;
    const char first = text[0];
    for (std::size_t i = hay.size() - m + 1; i-- > from;) {
      if (hay[i] == first && SameBytes(hay.data() + i + 1, text.data() + 1, m - 1)) return i;
    }
    return std::string_view::npos;
  }
  bool FoundIn(std::string_view hay) const { return Find(hay, 0) != std::string_view::npos; }
};

// A template: literal text and {field:class} captures, matched left to right without
// backtracking. The fast path for the high-volume lines (RE2 with captures costs microseconds).
struct TemplateToken {
  enum Class : std::uint8_t {
    kLiteral,
    kWord,
    kDigits,
    kQueueId,
    kIp,
    kHost,
    kAddr,
    kText,
    kGreedy,
    kRest
  };
  Class cls = kLiteral;
  std::string literal;  // kLiteral
  int field = -1;       // Field index, -1 for "_name" (matched, not kept)
  // Optional byte sets after the class, "{user:greedy[^,()]*}", "{_:[a-z][a-z0-9_-]*}": the
  // captured text must also be one byte of each `lead` set, then `min`..`max` bytes of `tail`.
  // They let a template hold a capture to exactly what the regex it stands in for accepts, so
  // that it declines (the regex then decides) rather than read a line differently.
  bool has_sets = false;
  std::vector<std::bitset<256>> lead;
  std::bitset<256> tail;
  std::size_t min = 0, max = 0;
  // Set at load (FinishTemplate). A field whose following literal starts with a byte the field
  // can never hold ends exactly where its bytes stop: matched by one table-driven scan instead of
  // a search for the literal and a second pass over the bytes (see MatchTemplate).
  bool scan = false;
  std::array<bool, 256> accepts{};  // bytes the field can hold anywhere in it
  std::size_t scan_max = 0;         // longest the field can be (SIZE_MAX: unbounded)
  // A literal that follows a field which is not scanned: what the field's end is searched with.
  std::shared_ptr<const ShiftedLiteral> finder;
};

struct CompiledPattern {
  PatternInfo info;
  std::vector<TemplateToken> tmpl;  // non-empty: a template pattern (no regex)
  EventType type = EventType::kAuthFailure;
  std::unique_ptr<RE2> re;
  // For captures only: `re` with its one bounded repetition that is a whole group ("(?P<_m>[^\s]
  // {1,100})") made unbounded, and that group. A bounded repetition compiles to one copy per
  // count; past 512 instructions RE2 captures with its NFA, ~5x slower than its bit-state engine.
  // Exact: the unbounded regex tries the same parses in the same order, longer ones first, so
  // when its group is within the bound its match is the one `re` finds; else `re` runs.
  std::unique_ptr<RE2> relaxed;
  int relaxed_group = 0;
  std::size_t relaxed_max = 0;
  std::string regex;
  int groups = 0;      // capturing groups, without group 0
  int submatches = 1;  // groups asked of RE2: up to the last one kept (RE2 fills each the same)
  std::vector<std::pair<int, Field>> captures;  // group index -> field
  std::vector<std::pair<Field, std::string>> constants;
  int weight_field = -1;  // Field index whose number is the weight
  std::string literal;
  std::vector<std::string> processes;
  std::vector<std::string> settled_by;  // fold = "held": parsers whose auth_failure lines settle it
};

// A prefilter literal: one of a route's regexes can match only where it occurs.
using PrefilterLiteral = ShiftedLiteral;

// The members of a set that a message starting with a given byte can match, in priority order,
// and the prefilter of their regexes.
struct FirstByteRoute {
  // Pattern index, and its index in the set's RE2::Set (-1: template).
  std::vector<std::pair<int, int>> order;
  bool has_regex = false;  // some member is a regex: the RE2::Set may have to run
  // Prefilter: one must occur; empty when some regex has none.
  std::vector<PrefilterLiteral> literals;
};

// A pattern set's RE2::Set, compiled when a line first needs it: of the shipped pack's 20 sets
// (~53 M instructions to compile, a fifth of loading) a log uses the ones of its own programs;
// a parser whose program never writes (rspamd next to amavis, policyd-spf's two flavours, a
// Postfix daemon that logs nothing the patterns know) no longer costs its compile. Only a set
// that cannot fail to compile is left for later (see BuildOneSet); thread-safe (std::call_once).
class LazyRegexSet {
 public:
  LazyRegexSet(const RE2::Options& options, RE2::Anchor anchor) : set_(options, anchor) {}
  RE2::Set& members() { return set_; }  // Add, before the first Match or CompileNow
  bool CompileNow() const {
    std::call_once(once_, [this] { compiled_ = set_.Compile(); });
    return compiled_;
  }
  // False when the set could not compile, which BuildOneSet rules out for a lazy one.
  bool Match(std::string_view text, std::vector<int>* hits) const {
    return CompileNow() && set_.Match(re2::StringPiece(text.data(), text.size()), hits);
  }

 private:
  mutable RE2::Set set_;
  mutable std::once_flag once_;
  mutable bool compiled_ = false;
};

struct PatternSet {
  // Every member in priority (file) order: pattern index, and its index in `set` (-1: template).
  std::vector<std::pair<int, int>> order;
  std::unique_ptr<LazyRegexSet> set;  // null when the members are all templates
  // Dispatch on the message's first byte: most members of a set start with a literal ("warning:
  // ", "connect from ", "NOQUEUE: "), so most of a line's candidates are ruled out by one byte
  // before any template compare, literal search or regex set. routes[0] is every member (for an
  // empty message); route_of[byte] indexes routes.
  std::vector<FirstByteRoute> routes;
  std::array<std::uint8_t, 256> route_of{};
};

using Captured = std::pair<int, std::string_view>;  // Field index, value
constexpr int kMaxCaptured = kMaxGroups;

bool ClassAccepts(TemplateToken::Class cls, std::string_view v) {
  auto all = [&](auto pred) {
    for (char c : v) {
      if (!pred(static_cast<unsigned char>(c))) return false;
    }
    return true;
  };
  switch (cls) {
    case TemplateToken::kWord:
      return !v.empty() && all([](unsigned char c) { return c > ' ' && c != 0x7f; });
    case TemplateToken::kDigits:
      return !v.empty() && v.size() <= 18 &&
             all([](unsigned char c) { return c >= '0' && c <= '9'; });
    case TemplateToken::kQueueId:
      return v.size() >= 5 && v.size() <= 20 && all([](unsigned char c) {
               return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
             });
    case TemplateToken::kIp:
      return !v.empty() && all([](unsigned char c) {
        return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') || c == ':' ||
               c == '.';
      });
    case TemplateToken::kHost:
      return !v.empty() && all([](unsigned char c) { return c > ' ' && c != '[' && c != ']'; });
    case TemplateToken::kAddr:  // a mail address between <>: may be empty (null sender)
      return all([](unsigned char c) { return c > ' ' && c != '<' && c != '>'; });
    default:
      return true;
  }
}

// Whether a byte can stand in a field of class cls (ClassAccepts adds the length bounds).
constexpr bool ClassByte(TemplateToken::Class cls, unsigned char c) {
  switch (cls) {
    case TemplateToken::kWord:
      return c > ' ' && c != 0x7f;
    case TemplateToken::kDigits:
      return c >= '0' && c <= '9';
    case TemplateToken::kQueueId:
      return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    case TemplateToken::kIp:
      return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') || c == ':' ||
             c == '.';
    case TemplateToken::kHost:
      return c > ' ' && c != '[' && c != ']';
    case TemplateToken::kAddr:
      return c > ' ' && c != '<' && c != '>';
    default:
      return true;
  }
}

// The longest text ClassAccepts takes for cls (SIZE_MAX: no bound).
constexpr std::size_t ClassMaxLength(TemplateToken::Class cls) {
  return cls == TemplateToken::kDigits    ? 18
         : cls == TemplateToken::kQueueId ? 20
                                          : std::numeric_limits<std::size_t>::max();
}

// ClassAccepts' length bounds alone, for text whose bytes are known to fit the class.
constexpr bool ClassLengthOk(TemplateToken::Class cls, std::size_t size) {
  switch (cls) {
    case TemplateToken::kWord:
    case TemplateToken::kIp:
    case TemplateToken::kHost:
      return size > 0;
    case TemplateToken::kDigits:
      return size > 0 && size <= 18;
    case TemplateToken::kQueueId:
      return size >= 5 && size <= 20;
    default:
      return true;
  }
}

bool SetsAccept(const TemplateToken& tok, std::string_view v) {
  if (v.size() < tok.lead.size()) return false;
  for (std::size_t i = 0; i < tok.lead.size(); ++i) {
    if (!tok.lead[i][static_cast<unsigned char>(v[i])]) return false;
  }
  const std::size_t rest = v.size() - tok.lead.size();
  if (rest < tok.min || rest > tok.max) return false;
  for (std::size_t i = tok.lead.size(); i < v.size(); ++i) {
    if (!tok.tail[static_cast<unsigned char>(v[i])]) return false;
  }
  return true;
}

// Returns the number of captures (>= 0) or -1 when the text does not fit the template.
int MatchTemplate(const std::vector<TemplateToken>& t, std::string_view text, Captured* out) {
  std::size_t pos = 0;
  int n = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const TemplateToken& tok = t[i];
    if (tok.cls == TemplateToken::kLiteral) {
      // Most lines fail on a template's first literal: test one byte before the rest.
      const std::size_t len = tok.literal.size();
      if (text.size() - pos < len || text[pos] != tok.literal[0] ||
          !SameBytes(text.data() + pos + 1, tok.literal.data() + 1, len - 1)) {
        return -1;
      }
      pos += len;
      continue;
    }
    if (tok.scan) {
      // The field's bytes up to the first byte it cannot hold; the next literal (which starts
      // with such a byte) must stand there, which the next token checks. Exact: the first
      // occurrence of that literal after pos is either there or the field holds a byte it
      // cannot, and the search below would then fail the same line (FinishTemplate).
      const std::size_t limit =
          tok.scan_max < text.size() - pos ? pos + tok.scan_max + 1 : text.size();
      std::size_t end = pos;
      while (end < limit && tok.accepts[static_cast<unsigned char>(text[end])]) ++end;
      const std::string_view v = text.substr(pos, end - pos);
      // Its bytes are all ones the class and the sets take: what is left is their lengths.
      if (!ClassLengthOk(tok.cls, v.size())) return -1;
      if (tok.has_sets &&
          (tok.lead.empty() ? v.size() < tok.min || v.size() > tok.max : !SetsAccept(tok, v))) {
        return -1;
      }
      if (tok.field >= 0) out[n++] = {tok.field, v};
      pos = end;
      continue;
    }
    std::size_t end;
    if (i + 1 == t.size()) {
      end = text.size();
    } else {
      const std::string& next = t[i + 1].literal;  // a field is always followed by a literal
      if (tok.cls == TemplateToken::kGreedy) {
        end = t[i + 1].finder->RFind(text, pos);  // rfind(next), and before pos is no match
      } else if (tok.cls == TemplateToken::kQueueId || tok.cls == TemplateToken::kDigits) {
        // Bounded classes (at most 20 characters): look no further than that, not the whole line.
        end = text.substr(0, std::min(text.size(), pos + 21 + next.size())).find(next, pos);
      } else {
        end = t[i + 1].finder->Find(text, pos);
      }
      if (end == std::string_view::npos || end < pos) return -1;
    }
    const std::string_view v = text.substr(pos, end - pos);
    if (!ClassAccepts(tok.cls, v) || (tok.has_sets && !SetsAccept(tok, v))) return -1;
    if (tok.field >= 0) out[n++] = {tok.field, v};
    pos = end;
  }
  return pos == text.size() ? n : -1;
}

struct Route {
  enum Kind { kExact, kPrefix, kGlob } kind = kExact;
  std::string text;  // for kPrefix without the trailing '*'
};

struct CompiledParser {
  std::string name;
  std::vector<Route> routes;
  bool service_from_program = false;
  std::vector<CompiledPattern> patterns;
  std::vector<PatternSet> sets;
  std::vector<std::pair<std::string, int>> process_sets;  // process name -> set
  int default_set = -1;                                   // patterns without a process list
  int label_base = 0;  // program_labels(): "<name>" here, "<name>/<process i>" at base + 1 + i
};

bool RouteMatches(const Route& r, std::string_view program) {
  switch (r.kind) {
    case Route::kExact:
      return program == r.text;
    case Route::kPrefix:
      return program.substr(0, r.text.size()) == r.text;
    case Route::kGlob: {
      char buf[256];
      if (program.size() >= sizeof(buf)) return false;
      if (!program.empty()) std::memcpy(buf, program.data(), program.size());
      buf[program.size()] = '\0';
      return fnmatch(r.text.c_str(), buf, 0) == 0;
    }
  }
  return false;
}

Route MakeRoute(const std::string& glob) {
  Route r;
  const auto meta = glob.find_first_of("*?[\\");
  if (meta == std::string::npos) {
    r.kind = Route::kExact;
    r.text = glob;
  } else if (meta == glob.size() - 1 && glob.back() == '*') {
    r.kind = Route::kPrefix;
    r.text = glob.substr(0, glob.size() - 1);
  } else {
    r.kind = Route::kGlob;
    r.text = glob;
  }
  return r;
}

// "postfix/submission/smtpd" -> "smtpd"
std::string_view LastComponent(std::string_view program) {
  const auto slash = program.rfind('/');
  return slash == std::string_view::npos ? program : program.substr(slash + 1);
}

// Postfix's master.cf service name: "postfix/submission/smtpd" -> "submission",
// "postfix/smtpd" -> "smtpd", "postfix-out/qmgr" -> "qmgr".
std::string_view ServiceFromProgram(std::string_view program) {
  const auto last = program.rfind('/');
  if (last == std::string_view::npos) return program;
  const auto prev = program.rfind('/', last - 1);
  if (last == 0 || prev == std::string_view::npos) return program.substr(last + 1);
  return program.substr(prev + 1, last - prev - 1);
}

// A dotted quad as glibc's inet_pton4 reads it (four octets of one to three digits, no leading
// zero, none over 255), without IpAddress::Parse's copy and the library call (~500
// instructions a line). False on anything else, for which the caller asks IpAddress::Parse;
// true only where inet_pton4 gives the same address.
bool ParseDottedQuad(std::string_view text, IpAddress* out) {
  if (text.size() < 7 || text.size() > 15) return false;
  std::uint32_t value = 0, octet = 0;
  int octets = 0;
  bool saw_digit = false;
  for (const char ch : text) {
    if (ch >= '0' && ch <= '9') {
      if (saw_digit && octet == 0) return false;  // a leading zero
      octet = octet * 10 + static_cast<std::uint32_t>(ch - '0');
      if (octet > 255) return false;
      if (!saw_digit) {
        if (++octets > 4) return false;
        saw_digit = true;
      }
    } else if (ch == '.' && saw_digit) {
      if (octets == 4) return false;
      value = value << 8 | octet;
      octet = 0;
      saw_digit = false;
    } else {
      return false;
    }
  }
  if (octets < 4 || !saw_digit) return false;
  *out = IpAddress::V4(value << 8 | octet);
  return true;
}

std::string_view DomainOf(std::string_view address) {
  const auto at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 >= address.size()) return {};
  return address.substr(at + 1);
}

class CompiledParserPack final : public ParserPack {
 public:
  CompiledParserPack(std::vector<CompiledParser> parsers, ParserPackOptions options)
      : parsers_(std::move(parsers)), options_(std::move(options)), generation_(NextGeneration()) {
    for (std::size_t i = 0; i < parsers_.size(); ++i) {
      CompiledParser& p = parsers_[i];
      for (auto& pattern : p.patterns) pattern.info.parser_index = static_cast<int>(i);
      p.label_base = static_cast<int>(labels_.size());
      labels_.push_back(p.name);
      for (const auto& [process, set] : p.process_sets) labels_.push_back(p.name + "/" + process);
    }
    // The auth_failure lines of the parsers a held pattern names settle held attempts. A name no
    // loaded parser has settles nothing: the held lines then count themselves after the hold.
    std::set<std::string, std::less<>> settling;
    for (const auto& p : parsers_) {
      for (const auto& pattern : p.patterns) {
        settling.insert(pattern.settled_by.begin(), pattern.settled_by.end());
      }
    }
    for (auto& p : parsers_) {
      if (!settling.contains(p.name)) continue;
      for (auto& pattern : p.patterns) {
        pattern.info.settles_held = pattern.info.emits && pattern.type == EventType::kAuthFailure &&
                                    pattern.info.fold != FoldRule::kHeld;
      }
    }
  }

  bool Parse(const SyslogMessage& msg, Event* event) const override {
    const PatternInfo* info = nullptr;
    return Match(msg, event, &info) && info->emits;
  }

  bool Match(const SyslogMessage& msg, Event* event, const PatternInfo** pattern) const override {
    int set_index = -1, label = -1;
    const CompiledParser* parser = Route(msg.program, &set_index, &label);
    if (parser == nullptr || set_index < 0) return false;
    const PatternSet& ps = parser->sets[set_index];
    const std::string_view text = msg.message;
    const FirstByteRoute& route =
        ps.routes[text.empty() ? 0 : ps.route_of[static_cast<unsigned char>(text[0])]];
    thread_local std::array<Captured, kMaxCaptured> captured;
    thread_local std::vector<int> hits;
    thread_local std::array<re2::StringPiece, kMaxGroups> groups;
    bool hits_known = false;
    for (const auto& [index, set_index] : route.order) {
      const CompiledPattern& p = parser->patterns[index];
      int n = -1;
      if (!p.tmpl.empty()) {
        n = MatchTemplate(p.tmpl, text, captured.data());
      } else {
        if (!hits_known) {
          hits_known = true;
          hits.clear();
          if (RegexCandidates(ps, route, text)) {
            ps.set->Match(text, &hits);
            std::sort(hits.begin(), hits.end());
          }
        }
        if (!std::binary_search(hits.begin(), hits.end(), set_index)) continue;
        const re2::StringPiece piece(text.data(), text.size());
        if (p.relaxed == nullptr ||
            !p.relaxed->Match(piece, 0, piece.size(), RE2::ANCHOR_START, groups.data(),
                              p.submatches) ||
            groups[p.relaxed_group].size() > p.relaxed_max) {
          if (!p.re->Match(piece, 0, piece.size(), RE2::ANCHOR_START, groups.data(),
                           p.submatches)) {
            continue;
          }
        }
        n = 0;
        for (const auto& [group, field] : p.captures) {
          const re2::StringPiece& g = groups[group];
          if (g.data() != nullptr) {
            captured[n++] = {static_cast<int>(field), std::string_view(g.data(), g.size())};
          }
        }
      }
      if (n < 0) continue;
      Fill(*parser, p, msg, captured.data(), n, event);
      *pattern = &p.info;
      return true;
    }
    return false;
  }

  std::size_t parser_count() const override { return parsers_.size(); }
  std::vector<std::string> parser_names() const override {
    std::vector<std::string> names;
    for (const auto& p : parsers_) names.push_back(p.name);
    return names;
  }
  std::vector<std::string> program_labels() const override { return labels_; }
  int ProgramLabel(std::string_view program) const override {
    int set_index = -1, label = -1;
    Route(program, &set_index, &label);
    return label;
  }
  int ParserIndex(std::string_view program) const override {
    int set_index = -1, label = -1;
    const CompiledParser* p = Route(program, &set_index, &label);
    return p != nullptr ? static_cast<int>(p - parsers_.data()) : -1;
  }

 private:
  // The cheap part before the regex set: one of the candidate regexes' literals must occur.
  static bool RegexCandidates(const PatternSet& ps, const FirstByteRoute& route,
                              std::string_view text) {
    if (ps.set == nullptr || !route.has_regex) return false;
    if (route.literals.empty()) return true;
    for (const auto& lit : route.literals) {
      if (lit.FoundIn(text)) return true;
    }
    return false;
  }

  // Program -> (parser, pattern set), through a small per-thread cache: a mail log has a dozen
  // program names, and matching every parser's globs on every line costs more than the patterns.
  const CompiledParser* Route(std::string_view program, int* set_index, int* label) const {
    struct Slot {
      const CompiledParserPack* pack = nullptr;
      std::uint64_t generation = 0;
      char program[48];
      std::uint8_t size = 0;
      const CompiledParser* parser = nullptr;
      int set = -1;
      int label = -1;
    };
    // 256 slots: with 32, two of a log's dozen programs often shared a slot and took turns
    // evicting each other (a tenth of the lookups on the default bench corpus went to the globs).
    thread_local std::array<Slot, 256> cache;
    if (program.size() > sizeof(Slot::program)) {
      const CompiledParser* p = RouteTo(program);
      *set_index = p != nullptr ? SetFor(*p, LastComponent(program)) : -1;
      *label = p != nullptr ? LabelFor(*p, LastComponent(program)) : -1;
      return p;
    }
    // The length and the first and last eight bytes tell a log's programs apart ("postfix/" +
    // "x/smtpd"): a few multiplications instead of a loop over every byte. A collision only
    // costs a lookup; the slot is checked against the whole name.
    const std::size_t n = program.size();
    std::uint64_t head = 0, tail = 0;
    if (n >= 8) {  // two fixed-size loads (a variable-size memcpy is a call)
      std::memcpy(&head, program.data(), 8);
      std::memcpy(&tail, program.data() + n - 8, 8);
    } else {
      for (std::size_t k = 0; k < n; ++k) {
        head = head << 8 | static_cast<unsigned char>(program[k]);
      }
      tail = head;
    }
    std::uint64_t h = (head * 0x9E3779B97F4A7C15ull) ^ (tail * 0xC2B2AE3D27D4EB4Full) ^ n;
    h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
    Slot& slot = cache[(h >> 56) % cache.size()];
    if (slot.pack == this && slot.generation == generation_ && slot.size == program.size() &&
        SameBytes(slot.program, program.data(), program.size())) {
      *set_index = slot.set;
      *label = slot.label;
      return slot.parser;
    }
    const CompiledParser* p = RouteTo(program);
    slot.pack = this;
    slot.generation = generation_;
    if (!program.empty()) std::memcpy(slot.program, program.data(), program.size());
    slot.size = static_cast<std::uint8_t>(program.size());
    slot.parser = p;
    slot.set = p != nullptr ? SetFor(*p, LastComponent(program)) : -1;
    slot.label = p != nullptr ? LabelFor(*p, LastComponent(program)) : -1;
    *set_index = slot.set;
    *label = slot.label;
    return p;
  }

  const CompiledParser* RouteTo(std::string_view program) const {
    for (const auto& p : parsers_) {
      for (const auto& r : p.routes) {
        if (RouteMatches(r, program)) return &p;
      }
    }
    return nullptr;
  }

  static int SetFor(const CompiledParser& p, std::string_view process) {
    for (const auto& [name, index] : p.process_sets) {
      if (name == process) return index;
    }
    return p.default_set;
  }

  static int LabelFor(const CompiledParser& p, std::string_view process) {
    for (std::size_t i = 0; i < p.process_sets.size(); ++i) {
      if (p.process_sets[i].first == process) return p.label_base + 1 + static_cast<int>(i);
    }
    return p.label_base;
  }

  void Fill(const CompiledParser& parser, const CompiledPattern& p, const SyslogMessage& msg,
            const Captured* captured, int n, Event* event) const {
    event->Clear();
    event->type = p.type;
    event->time = msg.time;
    event->line = msg.raw.empty() ? msg.message : msg.raw;
    event->program = msg.program;
    event->host = msg.hostname;
    event->pid = msg.pid;
    event->message = msg.message;
    event->parser = p.info.parser;
    for (int i = 0; i < n; ++i) {
      if (!captured[i].second.empty()) event->fields[captured[i].first] = captured[i].second;
    }
    for (const auto& [field, value] : p.constants) {
      if (!event->has(field)) event->set(field, value);
    }
    if (parser.service_from_program && !event->has(Field::kService)) {
      event->set(Field::kService, ServiceFromProgram(msg.program));
    }
    if (event->has(Field::kClientIp)) {
      // Postfix's "unknown[unknown]", junk: no address rather than a wrong one.
      if (!ParseDottedQuad(event->get(Field::kClientIp), &event->client_ip) &&
          !IpAddress::Parse(event->get(Field::kClientIp), &event->client_ip)) {
        event->set(Field::kClientIp, {});
      } else if (event->has(Field::kForwardedFor) || event->has(Field::kRealIp)) {
        ResolveForwardedClient(event);
      }
    }
    if (!event->has(Field::kSenderDomain)) {
      event->set(Field::kSenderDomain, DomainOf(event->get(Field::kSender)));
    }
    if (!event->has(Field::kRecipientDomain)) {
      event->set(Field::kRecipientDomain, DomainOf(event->get(Field::kRecipient)));
    }
    if (event->has(Field::kSpamScore)) {
      const std::string_view s = event->get(Field::kSpamScore);
      double v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) {
        event->spam_score = v;
      } else {
        event->set(Field::kSpamScore, {});  // amavis writes "Hits: -" when it did not score
      }
    }
    if (p.weight_field >= 0) {
      const std::string_view s = event->fields[p.weight_field];
      std::uint32_t w = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), w);
      if (ec == std::errc() && end == s.data() + s.size() && w > 0) {
        event->weight = std::min(w, kMaxWeight);
      }
    }
  }

  bool Trusted(const IpAddress& a) const {
    for (const IpPrefix& p : options_.trusted_proxies) {
      if (p.Contains(a)) return true;
    }
    return false;
  }

  // The connecting address is client_ip; X-Forwarded-For / X-Real-IP replace it only when it is
  // a trusted proxy (ParserPackOptions). Views stay in the line: no allocation.
  void ResolveForwardedClient(Event* event) const {
    if (!Trusted(event->client_ip)) return;  // the client's own headers: the peer counts
    std::string_view chosen;
    std::string_view xff = event->get(Field::kForwardedFor);
    while (!xff.empty()) {
      const std::size_t comma = xff.rfind(',');
      std::string_view entry = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
      xff = comma == std::string_view::npos ? std::string_view() : xff.substr(0, comma);
      while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
      while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
      if (entry.empty()) continue;
      IpAddress a;
      if (IpAddress::Parse(entry, &a) && Trusted(a)) continue;  // a further proxy of ours
      chosen = entry;
      break;
    }
    if (chosen.empty()) chosen = event->get(Field::kRealIp);
    IpAddress client;
    if (!chosen.empty() && IpAddress::Parse(chosen, &client)) {
      event->client_ip = client;
      event->set(Field::kClientIp, chosen);
    } else {
      event->client_ip = IpAddress();  // never the proxy's own address
      event->set(Field::kClientIp, {});
    }
  }

  // A pack at a reused address must not hit a previous pack's cache entries.
  static std::uint64_t NextGeneration() {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  std::vector<CompiledParser> parsers_;
  ParserPackOptions options_;
  std::vector<std::string> labels_;
  std::uint64_t generation_;
};

// ---------------------------------------------------------------------------------------------
// Loading

class Loader {
 public:
  explicit Loader(std::vector<Diagnostic>* diags) : diags_(diags) {}

  void LoadFile(const std::string& file) {
    toml::table doc;
    if (!ParseTomlFile(file, &doc, diags_).ok()) return;
    CheckKeys(file, doc, {"parser", "pattern"}, "the parser file");
    const toml::table* parser = doc["parser"].as_table();
    if (parser == nullptr) {
      diags_->push_back(Diagnostic{file, 1, 1, "missing [parser] table"});
      return;
    }
    CompiledParser out;
    CheckKeys(file, *parser, {"name", "description", "programs", "service_from_program"},
              "[parser]");
    if (!GetString(file, *parser, "name", true, &out.name)) return;
    if (!names_.insert(out.name).second) {
      Error(file, (*parser)["name"].node()->source(),
            fmt::format("parser '{}' is defined twice", out.name));
      return;
    }
    std::vector<std::string> programs;
    if (!GetStrings(file, *parser, "programs", true, &programs)) return;
    if (programs.empty()) {
      Error(file, parser->source(), "[parser] programs must name at least one program");
      return;
    }
    for (const auto& g : programs) out.routes.push_back(MakeRoute(g));
    if (parser->contains("service_from_program") &&
        !SettingsReader(*parser, "[parser]", file, diags_)
             .Bool("service_from_program", &out.service_from_program)) {
      return;
    }

    const toml::array* patterns = doc["pattern"].as_array();
    if (patterns == nullptr || patterns->empty()) {
      Error(file, doc.source(), "no [[pattern]] in parser '" + out.name + "'");
      return;
    }
    const std::size_t errors_before = diags_->size();
    std::set<std::string> pattern_names;
    for (const toml::node& n : *patterns) {
      const toml::table* t = n.as_table();
      if (t == nullptr) {
        Error(file, n.source(), "'pattern' must be an array of tables ([[pattern]])");
        continue;
      }
      CompiledPattern p;
      p.info.parser = out.name;
      if (CompilePattern(file, *t, &p)) {
        if (!pattern_names.insert(p.info.name).second) {
          Error(file, (*t)["name"].node()->source(),
                fmt::format("pattern '{}' is defined twice in parser '{}'", p.info.name, out.name));
          continue;
        }
        out.patterns.push_back(std::move(p));
      }
    }
    if (diags_->size() != errors_before) return;
    if (!BuildSets(file, &out)) return;
    parsers_.push_back(std::move(out));
  }

  std::vector<CompiledParser> Take() { return std::move(parsers_); }

 private:
  void Error(const std::string& file, const toml::source_region& where, std::string message) {
    diags_->push_back(MakeDiagnostic(file, where, std::move(message)));
  }

  void CheckKeys(const std::string& file, const toml::table& t,
                 std::initializer_list<std::string_view> known, std::string where) {
    SettingsReader(t, std::move(where), file, diags_).CheckKnownKeys(known);
  }

  bool GetString(const std::string& file, const toml::table& t, std::string_view key, bool required,
                 std::string* out) {
    if (!t.contains(key)) {
      if (required) Error(file, t.source(), fmt::format("missing '{}'", key));
      return !required;
    }
    return SettingsReader(t, "", file, diags_).String(key, out);
  }

  bool GetStrings(const std::string& file, const toml::table& t, std::string_view key,
                  bool required, std::vector<std::string>* out) {
    if (!t.contains(key)) {
      if (required) Error(file, t.source(), fmt::format("missing '{}'", key));
      return !required;
    }
    return SettingsReader(t, "", file, diags_).Strings(key, out);
  }

  bool CompilePattern(const std::string& file, const toml::table& t, CompiledPattern* p) {
    CheckKeys(
        file, t,
        {"name", "event", "regex", "template", "processes", "literal", "fields", "weight", "fold",
         "settled_by", "forget_queue_id", "drops_held", "drops_session_held", "description"},
        "[[pattern]]");
    std::string event;
    if (!GetString(file, t, "name", true, &p->info.name) ||
        !GetString(file, t, "event", true, &event) ||
        !GetString(file, t, "regex", false, &p->regex) ||
        !GetString(file, t, "literal", false, &p->literal) ||
        !GetStrings(file, t, "processes", false, &p->processes)) {
      return false;
    }
    if (event == "none") {
      p->info.emits = false;
    } else if (!ParseEventType(event, &p->type)) {
      Error(file, t["event"].node()->source(),
            fmt::format("unknown event type '{}' (expected an event type such as auth_failure, "
                        "or \"none\")",
                        event));
      return false;
    }
    std::string tmpl;
    if (!GetString(file, t, "template", false, &tmpl)) return false;
    if (tmpl.empty() == p->regex.empty()) {
      Error(file, t.source(),
            fmt::format("pattern '{}' needs exactly one of 'regex' and 'template'", p->info.name));
      return false;
    }
    if (!tmpl.empty())
      return CompileTemplate(file, t["template"].node()->source(), tmpl, p) &&
             CompileExtras(file, t, p);
    const toml::source_region& regex_at = t["regex"].node()->source();
    if (p->regex[0] != '^') {
      Error(file, regex_at,
            "regex must be anchored: start it with '^' (attacker text later in a line must "
            "never be taken for a field)");
      return false;
    }
    RE2::Options opts;
    opts.set_log_errors(false);
    // Patterns match bytes, not UTF-8: in RE2's default UTF-8 mode `.` and negated classes never
    // match an invalid UTF-8 byte, so one Latin-1 byte in a user name or HELO would make the whole
    // line unmatched and a brute force invisible. Valid UTF-8 text is still matched byte for byte.
    opts.set_encoding(RE2::Options::EncodingLatin1);
    p->re = std::make_unique<RE2>(p->regex, opts);
    if (!p->re->ok()) {
      Error(file, regex_at,
            fmt::format("bad regex in pattern '{}': {}", p->info.name, p->re->error()));
      return false;
    }
    p->groups = p->re->NumberOfCapturingGroups();
    if (p->groups + 1 > kMaxGroups) {
      Error(file, regex_at,
            fmt::format("too many capture groups ({}, at most {})", p->groups, kMaxGroups - 1));
      return false;
    }
    for (const auto& [name, index] : p->re->NamedCapturingGroups()) {
      if (!name.empty() && name[0] == '_') continue;  // named for readability only
      Field f;
      if (!ParseFieldName(name, &f)) {
        Error(file, regex_at,
              fmt::format("capture '{}' is not a field (client_ip, user, sasl_user, queue_id, "
                          "...; see docs/parsers.md); name it '_{}' to ignore it",
                          name, name));
        return false;
      }
      p->captures.emplace_back(index, f);
      p->submatches = std::max(p->submatches, index + 1);
    }
    if (p->re->ProgramSize() > 512) {  // RE2 has no bit-state engine for it: try to relax
      std::string relaxed;
      int group = 0;
      std::size_t max = 0;
      if (RelaxBoundedGroup(p->regex, &relaxed, &group, &max)) {
        auto re = std::make_unique<RE2>(relaxed, opts);
        if (re->ok() && re->NumberOfCapturingGroups() == p->groups && group <= p->groups) {
          p->relaxed = std::move(re);
          p->relaxed_group = group;
          p->relaxed_max = max;
          p->submatches = std::max(p->submatches, group + 1);
        }
      }
    }
    return CompileExtras(file, t, p);
  }

  // Finds a capture group whose whole body is one atom (a [class], an escape such as \S, or .)
  // repeated {m,n}, with neither it nor any group around it under *, + or {}: it matches at most
  // once per parse, so its text is exactly the repetition's. Writes the regex with "{m,}" there.
  // Gives up (false) on anything it does not fully understand.
  static bool RelaxBoundedGroup(const std::string& re, std::string* out, int* group,
                                std::size_t* max) {
    if (re.find("\\Q") != std::string::npos || re.find("[:") != std::string::npos ||
        re.find("(?<") != std::string::npos) {
      return false;
    }
    struct Open {
      std::size_t body;  // first byte after "(", "(?:", "(?P<name>"
      int index;         // capture index, or -1
    };
    struct Closed {
      std::size_t body, close;
      int index;
      std::vector<std::size_t> closes;  // ")" of this group and every enclosing one
    };
    std::vector<Open> stack;
    std::vector<Closed> groups;
    std::vector<std::pair<std::size_t, std::size_t>> classes;  // [start, end) of each [...]
    int next_index = 1;
    // Enclosing groups are closed after their members: remember each member's pending list.
    std::vector<std::vector<std::size_t>> members(1);  // indices into `groups` per depth
    for (std::size_t i = 0; i < re.size(); ++i) {
      const char c = re[i];
      if (c == '\\') {
        ++i;
        continue;
      }
      if (c == '[') {
        std::size_t j = i + 1;
        if (j < re.size() && re[j] == '^') ++j;
        if (j < re.size() && re[j] == ']') ++j;  // a leading ] is a literal
        for (; j < re.size() && re[j] != ']'; ++j) {
          if (re[j] == '\\') ++j;
        }
        if (j >= re.size()) return false;
        classes.emplace_back(i, j + 1);
        i = j;
        continue;
      }
      if (c == '(') {
        int index = -1;
        std::size_t body = i + 1;
        if (re.compare(i, 4, "(?P<") == 0) {
          const std::size_t gt = re.find('>', i);
          if (gt == std::string::npos) return false;
          index = next_index++;
          body = gt + 1;
        } else if (i + 1 < re.size() && re[i + 1] == '?') {
          const std::size_t colon = re.find_first_of(":)", i + 2);
          if (colon == std::string::npos) return false;
          if (re[colon] == ')') continue;  // a flag group such as (?i): no group
          body = colon + 1;
        } else {
          index = next_index++;
        }
        stack.push_back({body, index});
        members.emplace_back();
        i = body - 1;
        continue;
      }
      if (c == ')') {
        if (stack.empty()) return false;
        const Open o = stack.back();
        stack.pop_back();
        // Every group closed inside this one is enclosed by it.
        std::vector<std::size_t> inner = std::move(members.back());
        members.pop_back();
        for (std::size_t g : inner) groups[g].closes.push_back(i);
        groups.push_back({o.body, i, o.index, {i}});
        inner.push_back(groups.size() - 1);
        members.back().insert(members.back().end(), inner.begin(), inner.end());
      }
    }
    if (!stack.empty()) return false;
    for (const Closed& g : groups) {
      if (g.index < 0) continue;
      const std::string_view body(re.data() + g.body, g.close - g.body);
      if (body.empty() || body.back() != '}') continue;
      const std::size_t brace = body.rfind('{');
      if (brace == std::string_view::npos) continue;
      // The atom: exactly one class, escape or dot before the brace.
      const std::size_t atom_end = g.body + brace;
      bool one_atom =
          (brace == 1 && body[0] == '.') ||
          (brace == 2 && body[0] == '\\' && std::isalpha(static_cast<unsigned char>(body[1])));
      for (const auto& [start, end] : classes) {
        if (start == g.body && end == atom_end) one_atom = true;
      }
      if (!one_atom) continue;
      std::size_t lo = 0, hi = 0;
      const std::string_view counts = body.substr(brace + 1, body.size() - brace - 2);
      const std::size_t comma = counts.find(',');
      if (comma == std::string_view::npos) continue;
      const auto a = std::from_chars(counts.data(), counts.data() + comma, lo);
      const auto b = std::from_chars(counts.data() + comma + 1, counts.data() + counts.size(), hi);
      if (a.ec != std::errc() || a.ptr != counts.data() + comma || b.ec != std::errc() ||
          b.ptr != counts.data() + counts.size() || hi < lo) {
        continue;
      }
      bool repeated = false;
      for (std::size_t close : g.closes) {
        const char after = close + 1 < re.size() ? re[close + 1] : '\0';
        if (after == '*' || after == '+' || after == '{') repeated = true;
      }
      if (repeated) continue;
      *out = re.substr(0, atom_end) + "{" + std::to_string(lo) + ",}" + re.substr(g.close);
      *group = g.index;
      *max = hi;
      return true;
    }
    return false;
  }

  static TemplateToken LiteralToken(const std::string& text) {
    TemplateToken tok;
    tok.literal = text;
    return tok;
  }

  // The '}' that closes the capture whose spec starts at `from`: braces of a count ("{1,100}")
  // and anything inside a byte set ("[^{}]") do not close it. npos when nothing does.
  static std::size_t CaptureEnd(const std::string& text, std::size_t from) {
    int depth = 0;
    for (std::size_t k = from; k < text.size(); ++k) {
      const char c = text[k];
      if (c == '[') {
        ++k;
        if (k < text.size() && text[k] == '^') ++k;
        if (k < text.size() && text[k] == ']') ++k;  // "[]...]": a literal ']'
        while (k < text.size() && text[k] != ']') k += text[k] == '\\' ? 2 : 1;
        if (k >= text.size()) return std::string::npos;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}') {
        if (depth == 0) return k;
        --depth;
      }
    }
    return std::string::npos;
  }

  // "[a-z][a-z0-9_-]*", "[^,()]*", "[^\s]{1,100}": byte sets as in RE2 (ranges, '^', "\s" for
  // RE2's [\t\n\f\r ], "\d", "\n" "\t" "\r" "\f", "\x" for a literal x). Every set but the last
  // stands for one byte; the last takes a count: none (one), '?', '*', '+', "{n}" or "{m,n}".
  static bool ParseSets(std::string_view spec, TemplateToken* tok, std::string* why) {
    std::vector<std::bitset<256>> sets;
    std::size_t k = 0;
    while (k < spec.size() && spec[k] == '[') {
      std::bitset<256> set;
      ++k;
      const bool negate = k < spec.size() && spec[k] == '^';
      if (negate) ++k;
      bool first = true;
      while (k < spec.size() && (spec[k] != ']' || first)) {
        first = false;
        unsigned char lo = static_cast<unsigned char>(spec[k]);
        if (lo == '\\') {
          if (k + 1 >= spec.size()) break;
          const char e = spec[k + 1];
          k += 2;
          if (e == 's') {
            for (char c : {'\t', '\n', '\f', '\r', ' '}) set.set(static_cast<unsigned char>(c));
            continue;
          }
          if (e == 'd') {
            for (char c = '0'; c <= '9'; ++c) set.set(static_cast<unsigned char>(c));
            continue;
          }
          if (e == 'n' || e == 't' || e == 'r' || e == 'f') {
            lo = static_cast<unsigned char>(e == 'n'   ? '\n'
                                            : e == 't' ? '\t'
                                            : e == 'r' ? '\r'
                                                       : '\f');
          } else if (std::isalnum(static_cast<unsigned char>(e))) {
            *why = std::string("unknown escape '\\") + e +
                   "' in a byte set (\\s, \\d, \\n, \\t, \\r, \\f, \\<punctuation>)";
            return false;
          } else {
            lo = static_cast<unsigned char>(e);
          }
        } else {
          ++k;
        }
        unsigned char hi = lo;
        if (k + 1 < spec.size() && spec[k] == '-' && spec[k + 1] != ']') {
          hi = static_cast<unsigned char>(spec[k + 1]);
          k += 2;
          if (hi < lo) {
            *why = "byte range out of order in a byte set";
            return false;
          }
        }
        for (int c = lo; c <= hi; ++c) set.set(c);
      }
      if (k >= spec.size()) {
        *why = "'[' without ']' in a byte set";
        return false;
      }
      ++k;  // ']'
      if (negate) set.flip();
      sets.push_back(set);
    }
    if (sets.empty()) {
      *why = "expected a byte set '[...]'";
      return false;
    }
    const std::string_view count = spec.substr(k);
    std::size_t lo = 1, hi = 1;
    if (count == "*") {
      lo = 0, hi = std::numeric_limits<std::size_t>::max();
    } else if (count == "+") {
      hi = std::numeric_limits<std::size_t>::max();
    } else if (count == "?") {
      lo = 0;
    } else if (count.size() >= 3 && count.front() == '{' && count.back() == '}') {
      const std::string_view inner = count.substr(1, count.size() - 2);
      const std::size_t comma = inner.find(',');
      const std::string_view a = inner.substr(0, comma);
      const std::string_view b = comma == std::string_view::npos ? a : inner.substr(comma + 1);
      const auto ra = std::from_chars(a.data(), a.data() + a.size(), lo);
      const auto rb = std::from_chars(b.data(), b.data() + b.size(), hi);
      if (a.empty() || b.empty() || ra.ptr != a.data() + a.size() ||
          rb.ptr != b.data() + b.size() || hi < lo) {
        *why = "bad count '" + std::string(count) + "' after a byte set ({n} or {m,n})";
        return false;
      }
    } else if (!count.empty()) {
      *why = "unexpected '" + std::string(count) + "' after a byte set (*, +, ?, {n}, {m,n})";
      return false;
    }
    tok->has_sets = true;
    tok->tail = sets.back();
    sets.pop_back();
    tok->lead = std::move(sets);
    tok->min = lo;
    tok->max = hi;
    return true;
  }

  // "{queue_id:qid}: from=<{sender:greedy}>, size={size:digits}, ..."; "{{" is a literal "{".
  // A class may be followed by byte sets that the text must also fit: "{user:greedy[^(]*}";
  // byte sets alone are `text` with them: "{_:[a-z][a-z0-9_-]*}".
  bool CompileTemplate(const std::string& file, const toml::source_region& at,
                       const std::string& text, CompiledPattern* p) {
    static const std::pair<std::string_view, TemplateToken::Class> kClasses[] = {
        {"word", TemplateToken::kWord},   {"digits", TemplateToken::kDigits},
        {"qid", TemplateToken::kQueueId}, {"ip", TemplateToken::kIp},
        {"host", TemplateToken::kHost},   {"addr", TemplateToken::kAddr},
        {"text", TemplateToken::kText},   {"greedy", TemplateToken::kGreedy},
        {"rest", TemplateToken::kRest}};
    auto fail = [&](const std::string& why) {
      Error(file, at, fmt::format("bad template in pattern '{}': {}", p->info.name, why));
      return false;
    };
    std::string literal;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '{' && i + 1 < text.size() && text[i + 1] == '{') {
        literal += '{';
        ++i;
        continue;
      }
      if (text[i] != '{') {
        literal += text[i];
        continue;
      }
      const std::size_t close = CaptureEnd(text, i + 1);
      if (close == std::string::npos) return fail("'{' without '}'");
      if (!literal.empty()) {
        p->tmpl.push_back(LiteralToken(literal));
        literal.clear();
      } else if (!p->tmpl.empty()) {
        return fail("two captures must be separated by literal text");
      }
      const std::string spec = text.substr(i + 1, close - i - 1);
      const auto colon = spec.find(':');
      const std::string name = spec.substr(0, colon);
      std::string cls = colon == std::string::npos ? "word" : spec.substr(colon + 1);
      TemplateToken tok;
      tok.cls = TemplateToken::kLiteral;
      if (const auto bracket = cls.find('['); bracket != std::string::npos) {
        std::string why;
        if (!ParseSets(cls.substr(bracket), &tok, &why)) return fail(why);
        cls = bracket == 0 ? "text" : cls.substr(0, bracket);
      }
      for (const auto& [n, c] : kClasses) {
        if (cls == n) tok.cls = c;
      }
      if (tok.cls == TemplateToken::kLiteral) {
        return fail("unknown class '" + cls +
                    "' (word, digits, qid, ip, host, addr, text, greedy, rest)");
      }
      if (name.empty() || name[0] != '_') {
        Field f;
        if (!ParseFieldName(name, &f)) return fail("'" + name + "' is not a field");
        tok.field = static_cast<int>(f);
      }
      p->tmpl.push_back(tok);
      i = close;
    }
    if (!literal.empty()) p->tmpl.push_back(LiteralToken(literal));
    if (p->tmpl.front().cls != TemplateToken::kLiteral &&
        p->tmpl.front().cls != TemplateToken::kQueueId) {
      // Starting with a free capture would let the first literal be found anywhere.
      if (p->tmpl.size() > 1 && p->tmpl.front().cls != TemplateToken::kWord &&
          p->tmpl.front().cls != TemplateToken::kDigits) {
        return fail("a template must start with literal text or a word/digits/qid capture");
      }
    }
    for (std::size_t k = 0; k + 1 < p->tmpl.size(); ++k) {
      if (p->tmpl[k].cls == TemplateToken::kRest) return fail("{...:rest} must come last");
    }
    FinishTemplate(&p->tmpl);
    return true;
  }

  // Marks the fields MatchTemplate may end by a scan of their bytes rather than a search for the
  // next literal: those followed by a literal whose first byte they can never hold. Then the
  // literal's first occurrence after the field's start is exactly where the field's bytes stop,
  // or the field would hold a byte it cannot (and the search would fail the line too). Not
  // `greedy` (it ends at the literal's last occurrence) nor `rest` (last, takes everything).
  static void FinishTemplate(std::vector<TemplateToken>* tmpl) {
    for (std::size_t k = 0; k + 1 < tmpl->size(); ++k) {
      TemplateToken& tok = (*tmpl)[k];
      const TemplateToken& next = (*tmpl)[k + 1];
      if (tok.cls == TemplateToken::kLiteral || tok.cls == TemplateToken::kGreedy ||
          tok.cls == TemplateToken::kRest || next.cls != TemplateToken::kLiteral ||
          next.literal.empty()) {
        continue;
      }
      std::bitset<256> sets;
      if (tok.has_sets) {
        sets = tok.tail;
        for (const auto& lead : tok.lead) sets |= lead;
      } else {
        sets.set();
      }
      for (int c = 0; c < 256; ++c) {
        tok.accepts[static_cast<std::size_t>(c)] =
            ClassByte(tok.cls, static_cast<unsigned char>(c)) && sets[static_cast<std::size_t>(c)];
      }
      tok.scan_max = ClassMaxLength(tok.cls);
      if (tok.has_sets && tok.max != std::numeric_limits<std::size_t>::max()) {
        tok.scan_max = std::min(tok.scan_max, tok.lead.size() + tok.max);
      }
      tok.scan = !tok.accepts[static_cast<unsigned char>(next.literal[0])];
    }
    for (std::size_t k = 1; k < tmpl->size(); ++k) {
      TemplateToken& tok = (*tmpl)[k];
      const TemplateToken& field = (*tmpl)[k - 1];
      if (tok.cls == TemplateToken::kLiteral && field.cls != TemplateToken::kLiteral &&
          !field.scan) {
        tok.finder = std::make_shared<const ShiftedLiteral>(tok.literal);
      }
    }
  }

  bool CompileExtras(const std::string& file, const toml::table& t, CompiledPattern* p) {
    if (auto fields = t["fields"]) {
      const toml::table* ft = fields.as_table();
      if (ft == nullptr) {
        Error(file, fields.node()->source(), "'fields' must be a table of field = \"value\"");
        return false;
      }
      for (const auto& [k, v] : *ft) {
        Field f;
        if (!ParseFieldName(k.str(), &f)) {
          Error(file, v.source(), fmt::format("unknown field '{}'", k.str()));
          return false;
        }
        if (!v.is_string()) {
          Error(file, v.source(), fmt::format("field '{}' must be a string", k.str()));
          return false;
        }
        p->constants.emplace_back(f, v.as_string()->get());
      }
    }
    std::string weight;
    if (!GetString(file, t, "weight", false, &weight)) return false;
    if (!weight.empty()) {
      Field f;
      if (!ParseFieldName(weight, &f)) {
        Error(file, t["weight"].node()->source(),
              fmt::format("'weight' must name a captured field, not '{}'", weight));
        return false;
      }
      p->weight_field = static_cast<int>(f);
    }
    std::string fold;
    if (!GetString(file, t, "fold", false, &fold)) return false;
    if (fold == "superseded") {
      p->info.fold = FoldRule::kSuperseded;
    } else if (fold == "loopback_is_webmail") {
      p->info.fold = FoldRule::kLoopbackIsWebmail;
    } else if (fold == "held") {
      p->info.fold = FoldRule::kHeld;
    } else if (!fold.empty()) {
      Error(file, t["fold"].node()->source(),
            fmt::format("unknown fold '{}' (expected superseded, loopback_is_webmail or held)",
                        fold));
      return false;
    }
    if (!GetStrings(file, t, "settled_by", false, &p->settled_by)) return false;
    if (p->info.fold == FoldRule::kHeld && p->settled_by.empty()) {
      Error(file, t.source(),
            fmt::format("pattern '{}': fold = \"held\" needs 'settled_by' (the parsers whose "
                        "auth_failure lines count the same attempts)",
                        p->info.name));
      return false;
    }
    if (p->info.fold != FoldRule::kHeld && !p->settled_by.empty()) {
      Error(file, t["settled_by"].node()->source(),
            fmt::format("pattern '{}': 'settled_by' goes with fold = \"held\"", p->info.name));
      return false;
    }
    if (t.contains("forget_queue_id") && !SettingsReader(t, "[[pattern]]", file, diags_)
                                              .Bool("forget_queue_id", &p->info.forget_queue_id)) {
      return false;
    }
    if (t.contains("drops_held") &&
        !SettingsReader(t, "[[pattern]]", file, diags_).Bool("drops_held", &p->info.drops_held)) {
      return false;
    }
    if (p->info.drops_held && (p->weight_field < 0 || p->info.fold != FoldRule::kNone)) {
      Error(file, t["drops_held"].node()->source(),
            fmt::format("pattern '{}': drops_held needs 'weight' (the field counting the logins "
                        "that succeeded) and no fold",
                        p->info.name));
      return false;
    }
    if (t.contains("drops_session_held") &&
        !SettingsReader(t, "[[pattern]]", file, diags_)
             .Bool("drops_session_held", &p->info.drops_session_held)) {
      return false;
    }
    if (p->info.drops_session_held && p->info.fold != FoldRule::kNone) {
      Error(file, t["drops_session_held"].node()->source(),
            fmt::format("pattern '{}': drops_session_held goes with no fold (the line is a "
                        "login that succeeded)",
                        p->info.name));
      return false;
    }
    return true;
  }

  bool BuildOneSet(const std::string& file, CompiledParser* parser, std::vector<int> members,
                   int* out) {
    PatternSet ps;
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_encoding(RE2::Options::EncodingLatin1);  // bytes, as the patterns above
    opts.set_max_mem(64 << 20);
    int regexes = 0;
    for (int i : members) {
      const CompiledPattern& p = parser->patterns[i];
      if (!p.tmpl.empty()) {
        ps.order.emplace_back(i, -1);
        continue;
      }
      if (ps.set == nullptr) ps.set = std::make_unique<LazyRegexSet>(opts, RE2::ANCHOR_START);
      std::string error;
      if (ps.set->members().Add(p.regex, &error) < 0) {
        diags_->push_back(Diagnostic{file, 1, 1, "regex set: " + error});
        return false;
      }
      ps.order.emplace_back(i, regexes++);
    }
    BuildFirstByteRoutes(*parser, &ps);
    // RE2::Set::Compile fails only past max_mem: its program over a quarter of it (~1 M
    // instructions at 64 MiB), or too little left for the DFA. A set whose members' programs
    // (each compiled alone above) add up to a twentieth of that cannot fail: it is compiled when
    // a line first needs it. A larger one is compiled now, so that its failure is a load error.
    std::size_t instructions = 0;
    for (const auto& [index, set_index] : ps.order) {
      const CompiledPattern& p = parser->patterns[index];
      if (p.re != nullptr) instructions += static_cast<std::size_t>(p.re->ProgramSize());
    }
    constexpr std::size_t kLazyInstructions = 50'000;
    if (ps.set != nullptr && instructions > kLazyInstructions && !ps.set->CompileNow()) {
      diags_->push_back(
          Diagnostic{file, 1, 1, "parser '" + parser->name + "': patterns too large to compile"});
      return false;
    }
    parser->sets.push_back(std::move(ps));
    *out = static_cast<int>(parser->sets.size() - 1);
    return true;
  }

  // The bytes a message matching `p` can start with (a superset: every byte when unsure).
  static std::bitset<256> FirstBytes(const CompiledPattern& p) {
    std::bitset<256> bytes;
    if (!p.tmpl.empty()) {
      const TemplateToken& first = p.tmpl.front();
      if (first.cls == TemplateToken::kLiteral) {
        bytes.set(static_cast<unsigned char>(first.literal[0]));
        return bytes;
      }
      // A field first: the classes that never match empty text bound its first byte.
      for (int c = 0; c < 256; ++c) {
        const char ch = static_cast<char>(c);
        switch (first.cls) {
          case TemplateToken::kWord:
          case TemplateToken::kDigits:
          case TemplateToken::kIp:
          case TemplateToken::kHost:
            bytes[c] = ClassAccepts(first.cls, std::string_view(&ch, 1));
            break;
          case TemplateToken::kQueueId:  // 5-20 letters and digits
            bytes[c] = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
            break;
          default:  // may be empty or any byte
            bytes[c] = true;
        }
      }
      return bytes;
    }
    // Every string s the (start-anchored) regex matches has min <= s <= max, so s[0] lies in
    // [min[0], max[0]]; RE2 declines (false, or an empty min: the empty string may match) when
    // it cannot tell.
    std::string min, max;
    if (p.re != nullptr && p.re->PossibleMatchRange(&min, &max, 8) && !min.empty() &&
        !max.empty()) {
      for (int c = static_cast<unsigned char>(min[0]); c <= static_cast<unsigned char>(max[0]);
           ++c) {
        bytes.set(c);
      }
      return bytes;
    }
    bytes.set();
    return bytes;
  }

  static void BuildFirstByteRoutes(const CompiledParser& parser, PatternSet* ps) {
    std::vector<std::bitset<256>> first;
    for (const auto& [index, set_index] : ps->order) {
      first.push_back(FirstBytes(parser.patterns[index]));
    }
    auto make_route = [&](auto&& member) {
      FirstByteRoute r;
      std::vector<std::string> literals;
      bool all_literal = true;
      for (std::size_t k = 0; k < ps->order.size(); ++k) {
        if (!member(k)) continue;
        r.order.push_back(ps->order[k]);
        if (ps->order[k].second < 0) continue;
        r.has_regex = true;
        const std::string& lit = parser.patterns[ps->order[k].first].literal;
        if (lit.empty()) {
          all_literal = false;
        } else {
          literals.push_back(lit);
        }
      }
      if (!all_literal) literals.clear();
      std::sort(literals.begin(), literals.end());
      literals.erase(std::unique(literals.begin(), literals.end()), literals.end());
      // One of them must occur: a literal that holds another ("no auth attempts", "auth") occurs
      // only where the shorter one does, so searching for it adds nothing.
      for (const std::string& lit : literals) {
        const bool holds_another =
            std::any_of(literals.begin(), literals.end(), [&](const auto& o) {
              return o.size() < lit.size() && lit.find(o) != std::string::npos;
            });
        if (!holds_another) r.literals.emplace_back(lit);
      }
      return r;
    };
    ps->routes.push_back(make_route([](std::size_t) { return true; }));
    std::map<std::vector<bool>, std::uint8_t> seen;
    for (int c = 0; c < 256; ++c) {
      std::vector<bool> members(ps->order.size());
      for (std::size_t k = 0; k < members.size(); ++k) members[k] = first[k][c];
      auto [it, inserted] = seen.emplace(members, 0);
      if (inserted) {
        // At most 256 distinct member lists plus the full one: past 255 routes, a byte gets
        // the full list (correct, only slower).
        if (ps->routes.size() > 255) {
          it->second = 0;
        } else {
          it->second = static_cast<std::uint8_t>(ps->routes.size());
          ps->routes.push_back(make_route([&](std::size_t k) { return members[k]; }));
        }
      }
      ps->route_of[c] = it->second;
    }
  }

  bool BuildSets(const std::string& file, CompiledParser* parser) {
    std::set<std::string> processes;
    std::vector<int> generic;
    for (int i = 0; i < static_cast<int>(parser->patterns.size()); ++i) {
      const auto& p = parser->patterns[i];
      for (const auto& proc : p.processes) processes.insert(proc);
      if (p.processes.empty()) generic.push_back(i);
    }
    for (const auto& proc : processes) {
      std::vector<int> members;
      for (int i = 0; i < static_cast<int>(parser->patterns.size()); ++i) {
        const auto& ps = parser->patterns[i].processes;
        if (ps.empty() || std::find(ps.begin(), ps.end(), proc) != ps.end()) members.push_back(i);
      }
      int index = -1;
      if (!BuildOneSet(file, parser, std::move(members), &index)) return false;
      parser->process_sets.emplace_back(proc, index);
    }
    if (!generic.empty()) {
      if (!BuildOneSet(file, parser, std::move(generic), &parser->default_set)) return false;
    }
    return true;
  }

  std::vector<Diagnostic>* diags_;
  std::vector<CompiledParser> parsers_;
  std::set<std::string> names_;
};

}  // namespace

std::vector<IpPrefix> ParserPackOptions::DefaultTrustedProxies() {
  std::vector<IpPrefix> out(2);
  IpPrefix::Parse("127.0.0.0/8", &out[0]);
  IpPrefix::Parse("::1/128", &out[1]);
  return out;
}

Result<std::shared_ptr<const ParserPack>> ParserPack::Load(const std::vector<std::string>& paths,
                                                           std::vector<Diagnostic>* diagnostics,
                                                           const ParserPackOptions& options) {
  namespace fs = std::filesystem;
  std::vector<Diagnostic> local;
  std::vector<Diagnostic>* diags = diagnostics != nullptr ? diagnostics : &local;
  const std::size_t before = diags->size();
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> here;
      for (const auto& e : fs::directory_iterator(path, ec)) {
        if (e.is_regular_file() && e.path().extension() == ".toml") here.push_back(e.path());
      }
      if (ec) {
        diags->push_back(Diagnostic{path, 0, 0, "cannot read directory: " + ec.message()});
        continue;
      }
      std::sort(here.begin(), here.end());
      files.insert(files.end(), here.begin(), here.end());
    } else if (fs::is_regular_file(path, ec)) {
      files.push_back(path);
    } else {
      diags->push_back(Diagnostic{path, 0, 0, "no such parser file or directory"});
    }
  }
  Loader loader(diags);
  for (const auto& f : files) loader.LoadFile(f);
  if (diags->size() != before) {
    return Status::InvalidArgument(
        fmt::format("{} error(s) in parser files", diags->size() - before));
  }
  auto parsers = loader.Take();
  if (parsers.empty()) {
    return Status::InvalidArgument("no parsers found in " +
                                   fmt::format("{}", fmt::join(paths, ", ")));
  }
  return std::shared_ptr<const ParserPack>(
      std::make_shared<CompiledParserPack>(std::move(parsers), options));
}

bool ParseRoundcubeFileLine(std::string_view line, SyslogMessage* msg) {
  return SyslogParser::ParseRoundcubeLine(line, msg);
}

}  // namespace mxward
