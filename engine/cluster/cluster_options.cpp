#include "engine/cluster/cluster_options.h"

#include <libpq-fe.h>

#include <string_view>

#include <fmt/format.h>

#include "engine/base/secret_file.h"
#include "engine/base/settings_reader.h"

namespace mxward {
namespace {

// A node name goes into the decision log and into people's reading of it: short and plain.
bool IsNodeName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Ok when libpq parses dsn and finds no password in it; otherwise why not.
Status CheckDsnHasNoPassword(const std::string& dsn) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (options == nullptr) {
    // libpq's message quotes the part it could not read, which may be a password: not repeated.
    if (error != nullptr) PQfreemem(error);
    return Status::InvalidArgument(
        "'dsn' is not a libpq connection string (key=value pairs or a postgresql:// URI; "
        "check it with psql \"$dsn\")");
  }
  bool has_password = false;
  for (const PQconninfoOption* opt = options; opt->keyword != nullptr; ++opt) {
    if (std::string_view(opt->keyword) == "password" && opt->val != nullptr &&
        opt->val[0] != '\0') {
      has_password = true;
    }
  }
  PQconninfoFree(options);
  if (has_password) {
    return Status::InvalidArgument(
        "'dsn' must not hold a password: put it in the file password_file names");
  }
  return Status::Ok();
}

}  // namespace

Result<ClusterOptions> ClusterOptions::FromConfig(const Config& config,
                                                  std::vector<Diagnostic>* diagnostics) {
  ClusterOptions o;
  if (!config.document.contains("cluster")) return o;
  const std::size_t before = diagnostics->size();
  const toml::table* t = SectionTable(config, "cluster", diagnostics);
  if (t != nullptr) {
    o.enabled = true;
    SettingsReader r(*t, "[cluster]", config.source, diagnostics);
    r.CheckKnownKeys({"node", "dsn", "password_file", "role", "safety_tick", "retry_min",
                      "retry_max", "log_retention"});
    if (!t->contains("node")) {
      r.Error(t->source(), "[cluster] needs node: this node's name in the decision log");
    } else if (r.String("node", &o.node) && !IsNodeName(o.node)) {
      r.Error(
          *t->get("node"),
          fmt::format("'node': '{}' is not a node name (1 to 64 letters, digits, . _ -)", o.node));
    }
    if (!t->contains("dsn")) {
      r.Error(t->source(), "[cluster] needs dsn: the PostgreSQL connection (host=... dbname=...)");
    } else if (r.String("dsn", &o.dsn)) {
      // The password comes from password_file, never from the file people paste into tickets.
      // libpq's own parser reads the dsn as libpq will: key=value or a postgresql:// URI, where
      // a password hides in user:secret@host or ?password=.
      if (Status st = CheckDsnHasNoPassword(o.dsn); !st.ok()) r.Error(*t->get("dsn"), st.message());
    }
    ReadSecretSetting(r, "password_file", &o.password);
    std::string role = "full";
    if (r.Choice("role", {"full", "enforcer"}, &role)) {
      o.role = role == "enforcer" ? ClusterRole::kEnforcer : ClusterRole::kFull;
    }
    r.DurationMillis("safety_tick", &o.safety_tick_ms);
    r.DurationMillis("retry_min", &o.retry_min_ms);
    r.DurationMillis("retry_max", &o.retry_max_ms);
    r.DurationBetween("log_retention", 3600, 3650LL * 86400, &o.log_retention_s);
    if (o.retry_max_ms < o.retry_min_ms && t->contains("retry_max")) {
      r.Error(*t->get("retry_max"), "'retry_max' must be at least retry_min");
    }
  }
  if (diagnostics->size() > before) {
    SortByPosition(diagnostics, before);
    return Status::InvalidArgument("invalid [cluster] section");
  }
  return o;
}

}  // namespace mxward
