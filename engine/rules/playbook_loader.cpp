// CompilePlaybook: TOML -> Playbook, reporting every problem with its file:line:col.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <re2/re2.h>

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

std::string_view NodeTypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
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

// The parameters each action type takes (besides type, duration and dry_run).
struct ActionShape {
  std::string_view type;
  std::vector<std::string_view> params;
  std::vector<std::string_view> required;
};
const std::vector<ActionShape>& ActionShapes() {
  static const std::vector<ActionShape> shapes = {
      {"ban", {"address"}, {}},
      {"suspend_sending", {"user"}, {}},
      {"suspend", {"user"}, {}},
      {"require_password_change", {"user"}, {}},
      {"hold_queue", {"user"}, {}},
      {"webhook", {"target", "format"}, {"target"}},
      {"mail", {"to", "subject", "body"}, {"to"}},
      {"exec", {"target"}, {"target"}},
  };
  return shapes;
}

// Walks one file, collecting diagnostics.
class Compiler {
 public:
  Compiler(std::string file, std::vector<Diagnostic>* diags) : file_(std::move(file)), d_(diags) {}

  void Error(const toml::source_region& where, std::string msg) {
    d_->push_back(MakeDiagnostic(file_, where, std::move(msg)));
  }
  void Error(const toml::node& n, std::string msg) { Error(n.source(), std::move(msg)); }

  // Reports keys of t that are not in known.
  void CheckKeys(const toml::table& t, std::initializer_list<std::string_view> known,
                 std::string_view where) {
    for (const auto& [k, v] : t) {
      if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
        Error(k.source(), fmt::format("unknown field '{}' in {}", k.str(), where));
      }
    }
  }

  const toml::table* Table(const toml::node* n, std::string_view name) {
    if (!n) return nullptr;
    if (const toml::table* t = n->as_table()) return t;
    Error(*n, fmt::format("'{}' must be a table, not {}", name, NodeTypeName(*n)));
    return nullptr;
  }

  bool String(const toml::node* n, std::string_view name, std::string* out) {
    if (!n) return false;
    if (auto s = n->value_exact<std::string>()) {
      *out = *s;
      return true;
    }
    Error(*n, fmt::format("'{}' must be a string, not {}", name, NodeTypeName(*n)));
    return false;
  }

  bool Bool(const toml::node* n, std::string_view name, bool* out) {
    if (!n) return false;
    if (auto b = n->value_exact<bool>()) {
      *out = *b;
      return true;
    }
    Error(*n, fmt::format("'{}' must be true or false, not {}", name, NodeTypeName(*n)));
    return false;
  }

  bool Number(const toml::node* n, std::string_view name, double* out) {
    if (!n) return false;
    if (auto i = n->value_exact<std::int64_t>()) {
      *out = static_cast<double>(*i);
      return true;
    }
    if (auto f = n->value_exact<double>()) {
      *out = *f;
      return true;
    }
    Error(*n, fmt::format("'{}' must be a number, not {}", name, NodeTypeName(*n)));
    return false;
  }

  bool Integer(const toml::node* n, std::string_view name, std::int64_t lo, std::int64_t hi,
               std::int64_t* out) {
    if (!n) return false;
    auto i = n->value_exact<std::int64_t>();
    if (!i) {
      Error(*n, fmt::format("'{}' must be an integer, not {}", name, NodeTypeName(*n)));
      return false;
    }
    if (*i < lo || *i > hi) {
      Error(*n, fmt::format("'{}' must be between {} and {}", name, lo, hi));
      return false;
    }
    *out = *i;
    return true;
  }

  bool Duration(const toml::node* n, std::string_view name, std::int64_t* out) {
    std::string s;
    if (!n) return false;
    if (auto i = n->value_exact<std::int64_t>(); i && *i >= 0) {
      *out = *i;
      return true;
    }
    if (!n->is_string()) {
      Error(*n,
            fmt::format("'{}' must be a duration like \"10m\", not {}", name, NodeTypeName(*n)));
      return false;
    }
    String(n, name, &s);
    auto d = ParseDurationSeconds(s);
    if (!d.ok()) {
      Error(*n, fmt::format("'{}': {}", name, d.status().message()));
      return false;
    }
    *out = *d;
    return true;
  }

  // A string or an array of strings.
  bool Strings(const toml::node* n, std::string_view name, std::vector<std::string>* out) {
    if (!n) return false;
    if (auto s = n->value_exact<std::string>()) {
      out->push_back(*s);
      return true;
    }
    const toml::array* arr = n->as_array();
    if (!arr) {
      Error(*n, fmt::format("'{}' must be a string or an array of strings, not {}", name,
                            NodeTypeName(*n)));
      return false;
    }
    bool ok = true;
    for (const toml::node& e : *arr) {
      if (auto s = e.value_exact<std::string>()) {
        out->push_back(*s);
      } else {
        Error(e, fmt::format("'{}' must contain only strings, not {}", name, NodeTypeName(e)));
        ok = false;
      }
    }
    return ok;
  }

  void Cidrs(const toml::node* n, std::string_view name, std::vector<IpPrefix>* out) {
    if (!n) return;
    auto one = [&](const toml::node& e) {
      auto s = e.value_exact<std::string>();
      if (!s) {
        Error(e, fmt::format("'{}' must contain only strings, not {}", name, NodeTypeName(e)));
        return;
      }
      IpPrefix p;
      if (!IpPrefix::Parse(*s, &p)) {
        Error(e, fmt::format("'{}' is not an address or CIDR (like 192.0.2.0/24)", *s));
        return;
      }
      out->push_back(p);
    };
    if (const toml::array* arr = n->as_array()) {
      for (const toml::node& e : *arr) one(e);
    } else {
      one(*n);
    }
  }

  void EventTypes(const toml::node* n, std::array<bool, kEventTypeCount>* types) {
    std::vector<std::string> names;
    if (!Strings(n, "events", &names)) return;
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

  void ConditionOps(Field field, const toml::table& ops, std::vector<Condition>* out) {
    for (const auto& [k, v] : ops) {
      const std::string op(k.str());
      Condition c;
      c.field = field;
      if (op == "equals" || op == "not") {
        c.op = op == "equals" ? ConditionOp::kEquals : ConditionOp::kNotEquals;
        std::string s;
        if (!String(&v, op, &s)) continue;
        c.values.push_back(Lower(s));
      } else if (op == "in" || op == "not_in") {
        c.op = op == "in" ? ConditionOp::kIn : ConditionOp::kNotIn;
        if (!Strings(&v, op, &c.values)) continue;
        for (auto& s : c.values) s = Lower(s);
      } else if (op == "regex" || op == "not_regex") {
        c.op = op == "regex" ? ConditionOp::kRegex : ConditionOp::kNotRegex;
        std::string s;
        if (!String(&v, op, &s)) continue;
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
        const std::size_t before = d_->size();
        Cidrs(&v, op, &c.cidrs);
        if (d_->size() != before) continue;
      } else if (op == "lt" || op == "lte" || op == "gt" || op == "gte") {
        c.op = op == "lt"    ? ConditionOp::kLess
               : op == "lte" ? ConditionOp::kLessEqual
               : op == "gt"  ? ConditionOp::kGreater
                             : ConditionOp::kGreaterEqual;
        if (!Number(&v, op, &c.number)) continue;
      } else if (op == "exists") {
        c.op = ConditionOp::kExists;
        if (!Bool(&v, op, &c.exists)) continue;
      } else {
        Error(k.source(),
              fmt::format("unknown condition '{}' (known: equals, not, in, not_in, regex, "
                          "not_regex, cidr, not_cidr, lt, lte, gt, gte, exists)",
                          op));
        continue;
      }
      out->push_back(std::move(c));
    }
  }

  // [match] or [trigger.reset]: events plus field conditions.
  void Matcher(const toml::table& t, std::string_view where, EventMatcher* m,
               std::initializer_list<std::string_view> skip = {}) {
    if (const toml::node* ev = t.get("events")) {
      EventTypes(ev, &m->types);
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
        if (Strings(&v, name, &c.values)) {
          for (auto& s : c.values) s = Lower(s);
          m->conditions.push_back(std::move(c));
        }
      } else if (const toml::table* ops = v.as_table()) {
        ConditionOps(f, *ops, &m->conditions);
      } else {
        Error(v, fmt::format("condition on '{}' must be a string, a list or a table like "
                             "{{ regex = \"...\" }}, not {}",
                             name, NodeTypeName(v)));
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

  void Key(const toml::node* n, Playbook* pb) {
    std::vector<std::string> parts;
    if (!n) {
      pb->key.push_back(KeyPart{Field::kClientIp, -1});
      pb->key_kind = "client_ip";
      return;
    }
    if (!Strings(n, "key", &parts)) return;
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

  void Action(const toml::table& t, Playbook* pb) {
    ActionSpec a;
    const toml::node* type = t.get("type");
    if (!type) {
      Error(t.source(), "[[action]] needs 'type'");
      return;
    }
    if (!String(type, "type", &a.type)) return;
    const ActionShape* shape = nullptr;
    for (const auto& s : ActionShapes()) {
      if (s.type == a.type) shape = &s;
    }
    if (!shape) {
      Error(*type, fmt::format("unknown action type '{}' (known: ban, suspend_sending, suspend, "
                               "require_password_change, hold_queue, webhook, mail, exec)",
                               a.type));
      return;
    }
    for (const auto& [k, v] : t) {
      const std::string name(k.str());
      if (name == "type") continue;
      if (name == "duration") {
        Duration(&v, name, &a.duration_seconds);
      } else if (name == "dry_run") {
        Bool(&v, name, &a.dry_run);
      } else if (std::find(shape->params.begin(), shape->params.end(), name) !=
                 shape->params.end()) {
        std::string s;
        if (!String(&v, name, &s)) continue;
        Template tpl;
        CompileTemplate(v, s, &tpl);
        a.params.emplace_back(name, std::move(tpl));
      } else {
        std::string known = "type, duration, dry_run";
        for (auto p : shape->params) known += ", " + std::string(p);
        Error(k.source(),
              fmt::format("unknown field '{}' in {} action (known: {})", name, a.type, known));
      }
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
    if ((a.type == "suspend_sending" || a.type == "suspend" ||
         a.type == "require_password_change" || a.type == "hold_queue") &&
        !has("user")) {
      add_default("user", "{key}");
    }
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
    CheckKeys(doc,
              {"description", "severity", "mode", "key", "cooldown", "max_keys", "match", "trigger",
               "allow", "escalation", "action"},
              "the playbook");
    String(doc.get("description"), "description", &pb.description);
    std::string s;
    if (String(doc.get("severity"), "severity", &s) && !ParseSeverity(s, &pb.severity)) {
      Error(*doc.get("severity"),
            fmt::format("unknown severity '{}' (low, medium, high, critical)", s));
    }
    if (String(doc.get("mode"), "mode", &s) && !ParsePlaybookMode(s, &pb.mode)) {
      Error(*doc.get("mode"), fmt::format("unknown mode '{}' (enforce, dry-run)", s));
    }
    Key(doc.get("key"), &pb);
    std::int64_t max_keys = 0;
    if (Integer(doc.get("max_keys"), "max_keys", 1, 50'000'000, &max_keys)) {
      pb.max_keys = static_cast<std::size_t>(max_keys);
    }

    if (const toml::table* m = Table(doc.get("match"), "match")) {
      Matcher(*m, "[match]", &pb.match);
    } else if (!doc.contains("match")) {
      Error(doc.source(), "missing [match] (which events this playbook counts)");
    }

    if (const toml::table* t = Table(doc.get("trigger"), "trigger")) {
      Trigger& tr = pb.trigger;
      CheckKeys(*t, {"type", "threshold", "window", "field", "reset", "baseline"}, "[trigger]");
      if (String(t->get("type"), "type", &s)) {
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
      if (Integer(t->get("threshold"), "threshold", 1, max_th, &th)) {
        tr.threshold = static_cast<std::uint32_t>(th);
      } else if (!t->contains("threshold")) {
        Error(t->source(), "[trigger] needs 'threshold'");
      }
      if (!Duration(t->get("window"), "window", &tr.window_seconds)) {
        if (!t->contains("window") && tr.type != TriggerType::kConsecutive) {
          Error(t->source(), "[trigger] needs 'window' (like \"10m\")");
        }
      } else if (tr.window_seconds <= 0 || tr.window_seconds > 366 * 86400) {
        Error(*t->get("window"), "'window' must be between 1s and 366d");
      }
      if (const toml::node* f = t->get("field")) {
        if (String(f, "field", &s)) ParseKeyPart(*f, s, &tr.field);
        if (tr.type != TriggerType::kDistinct && tr.type != TriggerType::kNovel) {
          Error(*f, "'field' is for distinct and novel triggers");
        }
      } else if (tr.type == TriggerType::kDistinct || tr.type == TriggerType::kNovel) {
        Error(t->source(), "distinct and novel triggers need 'field' (the values they count)");
      }
      if (const toml::table* r = Table(t->get("reset"), "reset")) {
        Matcher(*r, "[trigger.reset]", &tr.reset);
      }
      if (const toml::table* b = Table(t->get("baseline"), "baseline")) {
        CheckKeys(*b, {"ttl", "warmup", "max_values", "max_keys"}, "[trigger.baseline]");
        Duration(b->get("ttl"), "ttl", &tr.baseline.ttl_seconds);
        Duration(b->get("warmup"), "warmup", &tr.baseline.warmup_seconds);
        std::int64_t v = 0;
        if (Integer(b->get("max_values"), "max_values", 1, 1'000'000, &v)) {
          tr.baseline.max_values = static_cast<std::uint32_t>(v);
        }
        if (Integer(b->get("max_keys"), "max_keys", 1, 10'000'000, &v)) {
          tr.baseline.max_keys = static_cast<std::size_t>(v);
        }
        if (tr.type != TriggerType::kNovel) {
          Error(t->get("baseline")->source(), "[trigger.baseline] is for novel triggers");
        }
      }
    } else if (!doc.contains("trigger")) {
      Error(doc.source(), "missing [trigger] (when this playbook opens an incident)");
    }

    if (const toml::table* a = Table(doc.get("allow"), "allow")) {
      CheckKeys(*a, {"cidrs", "users", "domains"}, "[allow]");
      Cidrs(a->get("cidrs"), "cidrs", &pb.allow.cidrs);
      Strings(a->get("users"), "users", &pb.allow.users);
      Strings(a->get("domains"), "domains", &pb.allow.domains);
      for (auto& u : pb.allow.users) u = Lower(u);
      for (auto& d : pb.allow.domains) d = Lower(d);
    }

    if (const toml::table* e = Table(doc.get("escalation"), "escalation")) {
      Escalation& es = pb.escalation;
      es.enabled = true;
      CheckKeys(*e, {"factor", "max", "lookback", "across_playbooks"}, "[escalation]");
      if (Number(e->get("factor"), "factor", &es.factor) && (es.factor < 1 || es.factor > 100)) {
        Error(*e->get("factor"), "'factor' must be between 1 and 100");
      }
      Duration(e->get("max"), "max", &es.max_seconds);
      Duration(e->get("lookback"), "lookback", &es.lookback_seconds);
      Bool(e->get("across_playbooks"), "across_playbooks", &es.across_playbooks);
    }

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
    Duration(doc.get("cooldown"), "cooldown", &pb.cooldown_seconds);

    if (d_->size() > before) {
      return Status::InvalidArgument(fmt::format("{} error(s) in {}", d_->size() - before, file_));
    }
    return pb;
  }

  Result<Playbook> CompileText(std::string_view text) {
    toml::table doc;
    try {
      doc = toml::parse(text, file_);
    } catch (const toml::parse_error& e) {
      Error(e.source(), std::string(e.description()));
      return Status::InvalidArgument(d_->back().ToString());
    }
    return Compile(doc);
  }

 private:
  std::string file_;
  std::vector<Diagnostic>* d_;
};

}  // namespace

bool IsKnownActionType(std::string_view type) {
  for (const auto& s : ActionShapes()) {
    if (s.type == type) return true;
  }
  return false;
}

Result<Playbook> CompilePlaybookText(std::string_view text, const std::string& path,
                                     std::vector<Diagnostic>* diagnostics) {
  const auto before = static_cast<std::ptrdiff_t>(diagnostics->size());
  auto result = Compiler(path, diagnostics).CompileText(text);
  if (result.ok()) result->identity = std::hash<std::string_view>{}(text);
  // In file order, as a person reads them.
  std::stable_sort(diagnostics->begin() + before, diagnostics->end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
  return result;
}

Result<Playbook> CompilePlaybook(const std::string& path, std::vector<Diagnostic>* diagnostics) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diagnostics->push_back(Diagnostic{path, 0, 0, "cannot read file"});
    return Status::NotFound("cannot read " + path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return CompilePlaybookText(ss.str(), path, diagnostics);
}

}  // namespace mxward
