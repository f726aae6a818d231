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

// poll_interval: "250ms" (the settings' durations count whole seconds; a poll is shorter) or a
// duration like "1s"; between 20 ms and 60 s.
void ReadPollInterval(SettingsReader& r, const toml::table& t, std::int64_t* out_ms) {
  const toml::node* n = t.get("poll_interval");
  if (n == nullptr) return;
  std::int64_t ms = -1;
  if (auto s = n->value_exact<std::string>(); s && s->size() > 2 && s->ends_with("ms")) {
    const std::string_view digits(s->data(), s->size() - 2);
    ms = 0;
    for (char c : digits) {
      if (c < '0' || c > '9' || ms > 1'000'000) {
        ms = -1;
        break;
      }
      ms = ms * 10 + (c - '0');
    }
    if (ms < 0) {
      r.Error(*n, fmt::format("'poll_interval': '{}' is not a duration like \"250ms\"", *s));
      return;
    }
  } else if (!r.DurationMillis("poll_interval", &ms)) {
    return;
  }
  if (ms < 20 || ms > 60'000) {
    r.Error(*n, "'poll_interval' must be between 20ms and 60s");
    return;
  }
  *out_ms = ms;
}

}  // namespace

const char* ClusterEngineName(ClusterEngine engine) {
  return engine == ClusterEngine::kMariadb ? "mariadb" : "postgresql";
}

Result<ClusterOptions> ClusterOptions::FromConfig(const Config& config,
                                                  std::vector<Diagnostic>* diagnostics) {
  ClusterOptions o;
  if (!config.document.contains("cluster")) return o;
  const std::size_t before = diagnostics->size();
  const toml::table* t = SectionTable(config, "cluster", diagnostics);
  if (t != nullptr) {
    o.enabled = true;
    SettingsReader r(*t, "[cluster]", config.source, diagnostics);
    r.CheckKnownKeys({"node", "engine", "dsn", "host", "port", "socket", "user", "database",
                      "password_file", "role", "safety_tick", "poll_interval", "retry_min",
                      "retry_max", "log_retention"});
    if (!t->contains("node")) {
      r.Error(t->source(), "[cluster] needs node: this node's name in the decision log");
    } else if (r.String("node", &o.node) && !IsNodeName(o.node)) {
      r.Error(
          *t->get("node"),
          fmt::format("'node': '{}' is not a node name (1 to 64 letters, digits, . _ -)", o.node));
    }
    std::string engine = "postgresql";
    if (r.Choice("engine", {"postgresql", "mariadb"}, &engine)) {
      o.engine = engine == "mariadb" ? ClusterEngine::kMariadb : ClusterEngine::kPostgresql;
    }
    if (o.engine == ClusterEngine::kPostgresql) {
      // MariaDB's settings in a PostgreSQL section are a config written for the other engine:
      // refused rather than ignored.
      for (const char* key : {"host", "port", "socket", "user", "database", "poll_interval"}) {
        if (t->contains(key)) {
          r.Error(*t->get(key),
                  fmt::format("'{}' is a MariaDB setting (engine = \"mariadb\"); PostgreSQL "
                              "takes the server, user and database from dsn",
                              key));
        }
      }
      if (!t->contains("dsn")) {
        r.Error(t->source(),
                "[cluster] needs dsn: the PostgreSQL connection (host=... dbname=...)");
      } else if (r.String("dsn", &o.dsn)) {
        // The password comes from password_file, never from the file people paste into
        // tickets. libpq's own parser reads the dsn as libpq will: key=value or a
        // postgresql:// URI, where a password hides in user:secret@host or ?password=.
        if (Status st = CheckDsnHasNoPassword(o.dsn); !st.ok()) {
          r.Error(*t->get("dsn"), st.message());
        }
      }
    } else {
      if (t->contains("dsn")) {
        r.Error(*t->get("dsn"),
                "'dsn' is PostgreSQL's connection string; with engine = \"mariadb\" name the "
                "server with host (and port) or socket, and user and database");
      }
      r.String("host", &o.host);
      r.String("socket", &o.socket);
      if (t->contains("port")) {
        std::int64_t port = o.port;
        if (r.Int("port", 1, 65535, &port)) o.port = static_cast<int>(port);
      }
      if (o.host.empty() == o.socket.empty()) {
        r.Error(t->get("socket") ? t->get("socket")->source() : t->source(),
                "[cluster] with engine = \"mariadb\" needs either host (and port) or socket, "
                "not both");
      } else if (!o.socket.empty() && t->contains("port")) {
        r.Error(*t->get("port"), "'port' goes with host, not with socket");
      }
      if (!t->contains("user")) {
        r.Error(t->source(), "[cluster] with engine = \"mariadb\" needs user");
      } else {
        r.String("user", &o.user);
      }
      if (!t->contains("database")) {
        r.Error(t->source(),
                "[cluster] with engine = \"mariadb\" needs database: the one the log's tables "
                "are created in");
      } else {
        r.String("database", &o.database);
      }
      ReadPollInterval(r, *t, &o.poll_interval_ms);
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
