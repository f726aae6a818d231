// CompilePlaybook: TOML -> Playbook, reporting every problem with its file:line:col.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>

#include "engine/base/settings_reader.h"
#include "mxward/action_types.h"
#include "mxward/config.h"
#include "mxward/playbook.h"
#include "mxward/time.h"

namespace mxward {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Placeholder {
  std::string_view name;
  Template::Kind kind;
};
constexpr Placeholder kPlaceholders[] = {
    {"key", Template::Kind::kKey},
    {"key_kind", Template::Kind::kKeyKind},
    {"count", Template::Kind::kCount},
    {"window", Template::Kind::kWindow},
    {"evidence", Template::Kind::kEvidence},
    {"playbook", Template::Kind::kPlaybook},
    {"description", Template::Kind::kDescription},
    {"severity", Template::Kind::kSeverity},
    {"trigger", Template::Kind::kTrigger},
    {"first_seen", Template::Kind::kFirstSeen},
    {"last_seen", Template::Kind::kLastSeen},
};

// Walks one file, collecting diagnostics.
class Compiler {
 public:
  Compiler(std::string file, std::vector<Diagnostic>* diags) : file_(std::move(file)), d_(diags) {}

  void Error(const toml::source_region& where, std::string msg) {
    d_->push_back(MakeDiagnostic(file_, where, std::move(msg)));
  }
  void Error(const toml::node& n, std::string msg) { Error(n.source(), std::move(msg)); }

  SettingsReader Reader(const toml::table& t, std::string where) {
    return SettingsReader(t, std::move(where), file_, d_);
  }

  // t["events"]: a string or an array of event type names.
  void EventTypes(SettingsReader& r, std::array<bool, kEventTypeCount>* types) {
    std::vector<std::string> names;
    if (!r.Strings("events", &names, /*single_ok=*/true)) return;
    const toml::node* n = r.table().get("events");
    const toml::array* arr = n->as_array();
    for (std::size_t i = 0; i < names.size(); ++i) {
      EventType t;
      if (ParseEventType(names[i], &t)) {
        (*types)[static_cast<int>(t)] = true;
      } else {
        const toml::node& at = arr ? *arr->get(i) : *n;
        std::string known;
        for (int k = 0; k < kEventTypeCount; ++k) {
          known += (k ? ", " : "") + std::string(EventTypeName(static_cast<EventType>(k)));
        }
        Error(at, fmt::format("unknown event type '{}' (known: {})", names[i], known));
      }
    }
  }

  void ConditionOps(Field field, std::string_view name, const toml::table& ops,
                    std::vector<Condition>* out) {
    SettingsReader r = Reader(ops, fmt::format("the condition on '{}'", name));
    r.CheckKnownKeys({"equals", "not", "in", "not_in", "regex", "not_regex", "cidr", "not_cidr",
                      "lt", "lte", "gt", "gte", "exists", "local"});
    for (const auto& [k, v] : ops) {
      const std::string op(k.str());
      Condition c;
      c.field = field;
      if (op == "equals" || op == "not") {
        c.op = op == "equals" ? ConditionOp::kEquals : ConditionOp::kNotEquals;
        std::string s;
        if (!r.String(op, &s)) continue;
        c.values.push_back(Lower(s));
      } else if (op == "in" || op == "not_in") {
        c.op = op == "in" ? ConditionOp::kIn : ConditionOp::kNotIn;
        if (!r.Strings(op, &c.values, /*single_ok=*/true)) continue;
        for (auto& s : c.values) s = Lower(s);
      } else if (op == "regex" || op == "not_regex") {
        c.op = op == "regex" ? ConditionOp::kRegex : ConditionOp::kNotRegex;
        std::string s;
        if (!r.String(op, &s)) continue;
        RE2::Options o;
        o.set_log_errors(false);
        // Bytes, as the parser pack: field values are attacker text and may be invalid UTF-8.
        o.set_encoding(RE2::Options::EncodingLatin1);
        auto re = std::make_shared<RE2>(s, o);
        if (!re->ok()) {
          Error(v, fmt::format("bad regex '{}': {}", s, re->error()));
          continue;
        }
        c.regex = std::move(re);
      } else if (op == "cidr" || op == "not_cidr") {
        c.op = op == "cidr" ? ConditionOp::kCidr : ConditionOp::kNotCidr;
        if (field != Field::kClientIp) {
          Error(k.source(), fmt::format("'{}' applies to client_ip only", op));
          continue;
        }
        if (!r.AddressPrefixes(op, &c.cidrs, /*single_ok=*/true)) continue;
      } else if (op == "lt" || op == "lte" || op == "gt" || op == "gte") {
        c.op = op == "lt"    ? ConditionOp::kLess
               : op == "lte" ? ConditionOp::kLessEqual
               : op == "gt"  ? ConditionOp::kGreater
                             : ConditionOp::kGreaterEqual;
        if (!r.Number(op, &c.number)) continue;
      } else if (op == "exists") {
        c.op = ConditionOp::kExists;
        if (!r.Bool(op, &c.exists)) continue;
      } else if (op == "local") {
        bool local = true;
        if (!r.Bool(op, &local)) continue;
        c.op = local ? ConditionOp::kLocalDomain : ConditionOp::kNotLocalDomain;
      } else {
        continue;  // reported by CheckKnownKeys
      }
      out->push_back(std::move(c));
    }
  }

  // [match] or [trigger.reset]: events plus field conditions.
  void Matcher(const toml::table& t, std::string_view where, EventMatcher* m,
               std::initializer_list<std::string_view> skip = {}) {
    SettingsReader r = Reader(t, std::string(where));
    if (t.contains("events")) {
      EventTypes(r, &m->types);
    } else {
      Error(t.source(), fmt::format("{} needs 'events' (a list of event types)", where));
    }
    for (const auto& [k, v] : t) {
      const std::string name(k.str());
      if (name == "events" || std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
      Field f;
      if (!ParseFieldName(name, &f)) {
        Error(k.source(), fmt::format("unknown field '{}' in {}", name, where));
        continue;
      }
      Condition c;
      c.field = f;
      if (auto s = v.value_exact<std::string>()) {
        c.op = ConditionOp::kEquals;
        c.values.push_back(Lower(*s));
        m->conditions.push_back(std::move(c));
      } else if (v.is_array()) {
        c.op = ConditionOp::kIn;
        if (r.Strings(name, &c.values)) {
          for (auto& s : c.values) s = Lower(s);
          m->conditions.push_back(std::move(c));
        }
      } else if (const toml::table* ops = v.as_table()) {
        ConditionOps(f, name, *ops, &m->conditions);
      } else {
        r.TypeError(v, name, "a string, a list or a table like { regex = \"...\" }");
      }
    }
  }

  // "sasl_user", "client_ip", "client_ip/24".
  bool ParseKeyPart(const toml::node& n, const std::string& p, KeyPart* out) {
    KeyPart kp;
    std::string_view name = p;
    const std::size_t slash = name.find('/');
    if (slash != std::string_view::npos) {
      std::string_view len = name.substr(slash + 1);
      name = name.substr(0, slash);
      int l = -1;
      auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), l);
      if (name != "client_ip" || ec != std::errc() || ptr != len.data() + len.size() || l < 0 ||
          l > 128) {
        Error(n, fmt::format("bad field '{}': only client_ip takes a prefix length "
                             "(client_ip/24, client_ip/64)",
                             p));
        return false;
      }
      kp.prefix_len = l;
    }
    if (!ParseFieldName(name, &kp.field)) {
      Error(n, fmt::format("unknown field '{}'", name));
      return false;
    }
    *out = kp;
    return true;
  }

  void Key(SettingsReader& top, Playbook* pb) {
    std::vector<std::string> parts;
    const toml::node* n = top.table().get("key");
    if (!n) {
      pb->key.push_back(KeyPart{Field::kClientIp, -1});
      pb->key_kind = "client_ip";
      return;
    }
    if (!top.Strings("key", &parts, /*single_ok=*/true)) return;
    const toml::array* arr = n->as_array();
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string& p = parts[i];
      KeyPart kp;
      if (!ParseKeyPart(arr ? *arr->get(i) : *n, p, &kp)) continue;
      pb->key.push_back(kp);
      pb->key_kind += (pb->key_kind.empty() ? "" : ",") + p;
    }
  }

  void CompileTemplate(const toml::node& n, const std::string& text, Template* out) {
    out->source = text;
    std::size_t i = 0;
    std::string lit;
    while (i < text.size()) {
      if (text[i] == '{' && i + 1 < text.size() && text[i + 1] == '{') {
        lit += '{';
        i += 2;
        continue;
      }
      if (text[i] == '}' && i + 1 < text.size() && text[i + 1] == '}') {
        lit += '}';
        i += 2;
        continue;
      }
      if (text[i] != '{') {
        lit += text[i++];
        continue;
      }
      const std::size_t close = text.find('}', i);
      if (close == std::string::npos) {
        Error(n, fmt::format("unclosed '{{' in \"{}\" (write {{{{ for a literal brace)", text));
        return;
      }
      const std::string name = text.substr(i + 1, close - i - 1);
      Template::Part part;
      Field f;
      bool found = false;
      for (const auto& ph : kPlaceholders) {
        if (ph.name == name) {
          part.kind = ph.kind;
          found = true;
        }
      }
      if (!found && ParseFieldName(name, &f)) {
        part.kind = Template::Kind::kField;
        part.field = f;
        found = true;
      }
      if (!found) {
        Error(n, fmt::format("unknown placeholder '{{{}}}' (an event field, or key, key_kind, "
                             "count, window, evidence, playbook, description, severity, trigger, "
                             "first_seen, last_seen)",
                             name));
        return;
      }
      if (!lit.empty()) out->parts.push_back({Template::Kind::kLiteral, std::move(lit), {}});
      lit.clear();
      out->parts.push_back(part);
      i = close + 1;
    }
    if (!lit.empty()) out->parts.push_back({Template::Kind::kLiteral, std::move(lit), {}});
  }

  // A ban's `ports`: "web", "mail, 8080", or a list ["web", 8443]. Kept as one literal text
  // "web,8443" (never a template: a log line must not choose what a ban covers); the names are
  // checked against [nftables] port groups by the executor, which alone knows them.
  void BanPorts(const toml::node& v, ActionSpec* a) {
    std::vector<std::string> parts;
    bool ok = true;
    if (const auto* s = v.as_string()) {
      parts.push_back(s->get());
    } else if (const auto* arr = v.as_array()) {
      for (const toml::node& e : *arr) {
        if (const auto* s = e.as_string()) {
          parts.push_back(s->get());
        } else if (const auto* i = e.as_integer(); i && i->get() >= 1 && i->get() <= 65535) {
          parts.push_back(std::to_string(i->get()));
        } else {
          ok = false;
        }
      }
    } else {
      ok = false;
    }
    std::string text = fmt::format("{}", fmt::join(parts, ","));
    const bool clean = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ',' || c == ' ';
    });
    if (!ok || !clean) {
      Error(v,
            "'ports' must be a port group (\"mail\", \"web\", \"all\", a name from "
            "[nftables] port_groups), a port number 1-65535, or a list of those");
      return;
    }
    Template tpl;
    tpl.source = text;
    tpl.parts.push_back({Template::Kind::kLiteral, std::move(text), {}});
    a->params.emplace_back("ports", std::move(tpl));
  }

  void Action(const toml::table& t, Playbook* pb) {
    ActionSpec a;
    a.line = static_cast<int>(t.source().begin.line);
    a.column = static_cast<int>(t.source().begin.column);
    const toml::node* type = t.get("type");
    if (!type) {
      Error(t.source(), "[[action]] needs 'type'");
      return;
    }
    if (!Reader(t, "[[action]]").String("type", &a.type)) return;
    const ActionTypeInfo* shape = FindActionType(a.type);
    if (!shape) {
      Error(*type, fmt::format("unknown action type '{}' (known: {})", a.type,
                               fmt::join(kActionTypeNames, ", ")));
      return;
    }
    SettingsReader r = Reader(t, fmt::format("{} action", a.type));
    std::vector<std::string_view> known = {"type", "duration", "dry_run"};
    known.insert(known.end(), shape->params.begin(), shape->params.end());
    r.CheckKnownKeys(known);
    r.Duration("duration", &a.duration_seconds);
    r.Bool("dry_run", &a.dry_run);
    for (const auto& [k, v] : t) {
      const std::string name(k.str());
      if (std::find(shape->params.begin(), shape->params.end(), name) == shape->params.end()) {
        continue;
      }
      if (a.type == "ban" && name == "ports") {
        BanPorts(v, &a);
        continue;
      }
      std::string s;
      if (!r.String(name, &s)) continue;
      Template tpl;
      CompileTemplate(v, s, &tpl);
      a.params.emplace_back(name, std::move(tpl));
    }
    for (auto req : shape->required) {
      if (!t.contains(req)) Error(t.source(), fmt::format("{} action needs '{}'", a.type, req));
    }
    // Defaults that make the common case one line.
    auto has = [&](std::string_view p) {
      return std::any_of(a.params.begin(), a.params.end(),
                         [&](const auto& kv) { return kv.first == p; });
    };
    auto add_default = [&](const std::string& name, const std::string& text) {
      Template tpl;
      CompileTemplate(t, text, &tpl);
      a.params.emplace_back(name, std::move(tpl));
    };
    if (a.type == "ban" && !has("address")) {
      const bool ip_key = pb->key.size() == 1 && pb->key[0].field == Field::kClientIp;
      if (!ip_key) {
        Error(t.source(), "ban action needs 'address' when the key is not client_ip");
      }
      add_default("address", "{key}");
    }
    if (a.type == "ban" && a.duration_seconds < 0) a.duration_seconds = 3600;
    // Mailbox actions act on the key when the playbook names no user.
    if (shape->subject_param == "user" && !has("user")) add_default("user", "{key}");
    if (a.type == "webhook" && !has("format")) add_default("format", "json");
    if (a.type == "mail" && !has("subject")) {
      add_default("subject", "[mxward] {playbook}: {key} ({trigger})");
    }
    pb->actions.push_back(std::move(a));
  }

  Result<Playbook> Compile(const toml::table& doc) {
    const std::size_t before = d_->size();
    Playbook pb;
    pb.file = file_;
    pb.name = std::filesystem::path(file_).stem().string();
    SettingsReader top = Reader(doc, "the playbook");
    top.CheckKnownKeys({"description", "severity", "mode", "key", "cooldown", "max_keys", "match",
                        "trigger", "allow", "escalation", "policy", "action", "evidence",
                        "shared"});
    top.String("description", &pb.description);
    std::string s;
    if (top.String("severity", &s) && !ParseSeverity(s, &pb.severity)) {
      Error(*doc.get("severity"),
            fmt::format("unknown severity '{}' (low, medium, high, critical)", s));
    }
    if (top.String("mode", &s) && !ParsePlaybookMode(s, &pb.mode)) {
      Error(*doc.get("mode"), fmt::format("unknown mode '{}' (enforce, dry-run)", s));
    }
    Key(top, &pb);
    std::int64_t max_keys = 0;
    if (top.Int("max_keys", 1, 50'000'000, &max_keys)) {
      pb.max_keys = static_cast<std::size_t>(max_keys);
    }

    if (const toml::table* m = top.Table("match")) {
      Matcher(*m, "[match]", &pb.match);
      // Log lines unless the playbook names a source: a Dovecot policy report and Dovecot's log
      // lines tell of the same attempt, and a playbook counting both would count it twice.
      const bool names_source =
          std::any_of(pb.match.conditions.begin(), pb.match.conditions.end(),
                      [](const Condition& c) { return c.field == Field::kSource; });
      if (!names_source) {
        Condition logs_only;
        logs_only.field = Field::kSource;
        logs_only.op = ConditionOp::kExists;
        logs_only.exists = false;
        pb.match.conditions.push_back(std::move(logs_only));
      }
    } else if (!doc.contains("match")) {
      Error(doc.source(), "missing [match] (which events this playbook counts)");
    }

    if (const toml::table* t = top.Table("trigger")) {
      Trigger& tr = pb.trigger;
      SettingsReader tr_r = Reader(*t, "[trigger]");
      tr_r.CheckKnownKeys({"type", "threshold", "window", "field", "reset", "baseline", "fallback",
                           "min_addresses"});
      if (tr_r.String("type", &s)) {
        if (s == "count")
          tr.type = TriggerType::kCount;
        else if (s == "distinct")
          tr.type = TriggerType::kDistinct;
        else if (s == "consecutive")
          tr.type = TriggerType::kConsecutive;
        else if (s == "novel")
          tr.type = TriggerType::kNovel;
        else
          Error(*t->get("type"), fmt::format("unknown trigger type '{}' (count, distinct, "
                                             "consecutive, novel)",
                                             s));
      } else if (!t->contains("type")) {
        Error(t->source(), "[trigger] needs 'type'");
      }
      std::int64_t th = 0;
      const std::int64_t max_th = tr.type == TriggerType::kConsecutive ? 1'000'000'000 : 65535;
      if (tr_r.Int("threshold", 1, max_th, &th)) {
        tr.threshold = static_cast<std::uint32_t>(th);
      } else if (!t->contains("threshold")) {
        Error(t->source(), "[trigger] needs 'threshold'");
      }
      if (!tr_r.Duration("window", &tr.window_seconds)) {
        if (!t->contains("window") && tr.type != TriggerType::kConsecutive) {
          Error(t->source(), "[trigger] needs 'window' (like \"10m\")");
        }
      } else if (tr.window_seconds <= 0 || tr.window_seconds > 366 * 86400) {
        Error(*t->get("window"), "'window' must be between 1s and 366d");
      }
      if (const toml::node* f = t->get("field")) {
        if (tr_r.String("field", &s)) ParseKeyPart(*f, s, &tr.field);
        if (tr.type != TriggerType::kDistinct && tr.type != TriggerType::kNovel) {
          Error(*f, "'field' is for distinct and novel triggers");
        }
      } else if (tr.type == TriggerType::kDistinct || tr.type == TriggerType::kNovel) {
        Error(t->source(), "distinct and novel triggers need 'field' (the values they count)");
      }
      if (const toml::table* r = tr_r.Table("reset")) {
        Matcher(*r, "[trigger.reset]", &tr.reset);
      }
      std::int64_t min_addresses = 0;
      if (tr_r.Int("min_addresses", 2, 1000, &min_addresses)) {
        tr.min_addresses = static_cast<std::uint32_t>(min_addresses);
        const bool network_key = std::any_of(pb.key.begin(), pb.key.end(), [](const KeyPart& k) {
          return k.field == Field::kClientIp && k.prefix_len >= 0;
        });
        if (!network_key) {
          Error(*t->get("min_addresses"),
                "'min_addresses' is for keys on a network (key = \"client_ip/24\" and the like)");
        }
      }
      if (const toml::table* b = tr_r.Table("baseline")) {
        SettingsReader br = Reader(*b, "[trigger.baseline]");
        br.CheckKnownKeys({"ttl", "warmup", "max_values", "max_keys"});
        br.Duration("ttl", &tr.baseline.ttl_seconds);
        br.Duration("warmup", &tr.baseline.warmup_seconds);
        std::int64_t v = 0;
        if (br.Int("max_values", 1, 1'000'000, &v)) {
          tr.baseline.max_values = static_cast<std::uint32_t>(v);
        }
        if (br.Int("max_keys", 1, 10'000'000, &v)) {
          tr.baseline.max_keys = static_cast<std::size_t>(v);
        }
        if (tr.type != TriggerType::kNovel) {
          Error(t->get("baseline")->source(), "[trigger.baseline] is for novel triggers");
        }
      }
      if (const toml::table* f = tr_r.Table("fallback")) {
        WarmupFallback& fb = tr.fallback;
        fb.enabled = true;
        SettingsReader fr = Reader(*f, "[trigger.fallback]");
        fr.CheckKnownKeys({"distinct", "over", "window"});
        if (const toml::node* d = f->get("distinct")) {
          if (fr.String("distinct", &s)) ParseKeyPart(*d, s, &fb.field);
        } else {
          Error(f->source(), "[trigger.fallback] needs 'distinct' (the values it counts)");
        }
        std::int64_t over = 0;
        if (fr.Int("over", 1, 65534, &over)) {
          fb.over = static_cast<std::uint32_t>(over);
        } else if (!f->contains("over")) {
          Error(f->source(), "[trigger.fallback] needs 'over' (it fires above this many)");
        }
        if (!fr.Duration("window", &fb.window_seconds)) {
          if (!f->contains("window")) {
            Error(f->source(), "[trigger.fallback] needs 'window' (like \"1h\")");
          }
        } else if (fb.window_seconds <= 0 || fb.window_seconds > 366 * 86400) {
          Error(*f->get("window"), "'window' must be between 1s and 366d");
        }
        if (tr.type != TriggerType::kNovel) {
          Error(t->get("fallback")->source(), "[trigger.fallback] is for novel triggers");
        }
      }
    } else if (!doc.contains("trigger")) {
      Error(doc.source(), "missing [trigger] (when this playbook opens an incident)");
    }

    if (const toml::table* a = top.Table("allow")) {
      SettingsReader ar = Reader(*a, "[allow]");
      ar.CheckKnownKeys({"cidrs", "users", "domains"});
      ar.AddressPrefixes("cidrs", &pb.allow.cidrs, /*single_ok=*/true);
      ar.Strings("users", &pb.allow.users, /*single_ok=*/true);
      ar.Strings("domains", &pb.allow.domains, /*single_ok=*/true);
      for (auto& u : pb.allow.users) u = Lower(u);
      for (auto& d : pb.allow.domains) d = Lower(d);
    }

    if (const toml::table* e = top.Table("escalation")) {
      Escalation& es = pb.escalation;
      es.enabled = true;
      SettingsReader er = Reader(*e, "[escalation]");
      er.CheckKnownKeys({"factor", "max", "lookback", "across_playbooks"});
      if (er.Number("factor", &es.factor) && (es.factor < 1 || es.factor > 100)) {
        Error(*e->get("factor"), "'factor' must be between 1 and 100");
      }
      er.Duration("max", &es.max_seconds);
      er.Duration("lookback", &es.lookback_seconds);
      er.Bool("across_playbooks", &es.across_playbooks);
    }

    if (const toml::table* p = top.Table("policy")) PolicySection(*p, &pb);

    std::int64_t ban_seconds = 0;
    if (const toml::node* acts = doc.get("action")) {
      const toml::array* arr = acts->as_array();
      if (!arr || !arr->is_array_of_tables()) {
        Error(*acts, "'action' must be written as [[action]] tables");
      } else {
        for (const toml::node& n : *arr) Action(*n.as_table(), &pb);
      }
    }
    for (const auto& a : pb.actions) {
      if (a.type == "ban") ban_seconds = std::max(ban_seconds, a.duration_seconds);
    }
    // One incident per key while its ban stands (or at least while its window lasts).
    pb.cooldown_seconds = std::max(ban_seconds, pb.trigger.window_seconds);
    top.Duration("cooldown", &pb.cooldown_seconds);

    // Only verified lines count for a playbook that acts on mailboxes, unless it says otherwise.
    pb.verified_evidence_only =
        std::any_of(pb.actions.begin(), pb.actions.end(),
                    [](const ActionSpec& a) { return ActsOnMailbox(a.type); });
    if (top.String("evidence", &s)) {
      if (s == "verified") {
        pb.verified_evidence_only = true;
      } else if (s == "any") {
        pb.verified_evidence_only = false;
      } else {
        Error(*doc.get("evidence"),
              fmt::format("unknown evidence '{}' (verified: only lines whose writer was checked "
                          "or whose input is trusted; any: every line)",
                          s));
      }
    }

    if (const toml::node* n = doc.get("shared")) {
      if (top.Bool("shared", &pb.shared)) {
        pb.shared_line = static_cast<int>(n->source().begin.line);
        pb.shared_column = static_cast<int>(n->source().begin.column);
      }
      if (pb.shared) SharedChecks(*n, pb);
    }

    if (d_->size() > before) {
      return Status::InvalidArgument(fmt::format("{} error(s) in {}", d_->size() - before, file_));
    }
    return pb;
  }

  // `shared = true`: the cluster folds other nodes' counted events into this playbook's windows,
  // and an event travels as (playbook, key, time, weight) only. Refused where that cannot rebuild
  // the state (docs/cluster.md, "Shared windows"): a distinct or novel trigger needs each event's
  // value, a consecutive one the order of every event and reset, min_addresses the addresses; an
  // action whose text uses a field outside the key could not be filled for an incident that a
  // folded event opened.
  void SharedChecks(const toml::node& where, const Playbook& pb) {
    if (pb.trigger.type != TriggerType::kCount) {
      Error(where, fmt::format("'shared = true' needs a count trigger (this one is {}): other "
                               "nodes' events carry the key and the time only",
                               TriggerTypeName(pb.trigger.type)));
    }
    if (pb.trigger.min_addresses > 0) {
      Error(where,
            "'shared = true' cannot be used with [trigger] min_addresses: other nodes' events "
            "carry the key, not the address");
    }
    for (const ActionSpec& a : pb.actions) {
      for (const auto& [name, tpl] : a.params) {
        for (const Template::Part& part : tpl.parts) {
          if (part.kind != Template::Kind::kField) continue;
          const bool in_key = std::any_of(pb.key.begin(), pb.key.end(),
                                          [&](const KeyPart& k) { return k.field == part.field; });
          if (in_key) continue;
          d_->push_back(Diagnostic{
              file_, a.line, a.column,
              fmt::format("'{}' of this {} action uses {{{}}}, which is not part of the key: "
                          "with 'shared = true' an incident can be opened by another node's "
                          "events, which carry only the key (use {{key}} or a key field)",
                          name, a.type, FieldName(part.field))});
        }
      }
    }
  }

  // [policy] delay_from / delay: a soft threshold below the trigger's, answered to Dovecot's
  // policy requests as a delay (PolicyDelay). Both or neither; below the threshold, or the ban
  // would come first; a short delay, because Dovecot holds the login (and its auth worker's
  // request) for that long.
  void PolicySection(const toml::table& t, Playbook* pb) {
    SettingsReader r = Reader(t, "[policy]");
    r.CheckKnownKeys({"delay_from", "delay"});
    std::int64_t from = 0;
    const bool has_from = r.Int("delay_from", 1, 65535, &from);
    const bool has_delay = r.Duration("delay", &pb->policy_delay.seconds);
    if (has_from != has_delay) {
      if (t.contains("delay_from") != t.contains("delay")) {
        Error(t.source(), "[policy] needs both 'delay_from' and 'delay'");
      }
      pb->policy_delay = {};
      return;
    }
    if (!has_from) return;
    pb->policy_delay.from = static_cast<std::uint32_t>(from);
    if (pb->policy_delay.seconds < 1 || pb->policy_delay.seconds > kMaxPolicyDelaySeconds) {
      Error(*t.get("delay"),
            fmt::format("'delay' must be between 1s and {}s", kMaxPolicyDelaySeconds));
    }
    if (pb->trigger.type == TriggerType::kNovel) {
      Error(*t.get("delay_from"), "a delay needs a count, distinct or consecutive trigger");
    } else if (pb->policy_delay.from >= pb->trigger.threshold) {
      Error(*t.get("delay_from"),
            fmt::format("'delay_from' must be below the trigger's threshold ({})",
                        pb->trigger.threshold));
    }
  }
  // Dovecot waits that long inside the login; past 10 s a client times out instead.
  static constexpr std::int64_t kMaxPolicyDelaySeconds = 10;

  Result<Playbook> CompileText(std::string_view text) {
    toml::table doc;
    if (Status st = ParseToml(text, file_, &doc, d_); !st.ok()) return st;
    auto pb = Compile(doc);
    if (pb.ok()) pb->identity = CountingIdentity(doc, pb->verified_evidence_only);
    return pb;
  }

  // What a reload compares to keep a playbook's windows: the parts that define what is counted
  // and how (key, max_keys, [match], [trigger], which lines count), written back out by toml++ so
  // comments, layout and key order do not matter. A new description, severity, mode, allowlist,
  // cooldown, escalation or action keeps the state: none of them changes what a window holds,
  // unless the actions change which lines count (a first action on a mailbox).
  static std::uint64_t CountingIdentity(const toml::table& doc, bool verified_evidence_only) {
    toml::table counting;
    for (const char* part : {"key", "max_keys", "match", "trigger", "shared"}) {
      if (const toml::node* n = doc.get(part)) {
        n->visit([&](const auto& v) { counting.insert(part, v); });
      }
    }
    counting.insert("evidence", verified_evidence_only ? "verified" : "any");
    std::ostringstream text;
    text << counting;
    return std::hash<std::string>{}(text.str());
  }

 private:
  std::string file_;
  std::vector<Diagnostic>* d_;
};

}  // namespace

Result<Playbook> CompilePlaybookText(std::string_view text, const std::string& path,
                                     std::vector<Diagnostic>* diagnostics) {
  const std::size_t before = diagnostics->size();
  auto result = Compiler(path, diagnostics).CompileText(text);
  // In file order, as a person reads them.
  SortByPosition(diagnostics, before);
  return result;
}

Result<Playbook> CompilePlaybook(const std::string& path, std::vector<Diagnostic>* diagnostics) {
  auto text = ReadTextFile(path, diagnostics);
  if (!text.ok()) return text.status();
  return CompilePlaybookText(*text, path, diagnostics);
}

}  // namespace mxward
