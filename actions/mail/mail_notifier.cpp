#include "actions/mail/mail_notifier.h"

#include <curl/curl.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "actions/common/curl_global.h"
#include "actions/common/incident_text.h"
#include "engine/base/secret_file.h"
#include "engine/base/settings_reader.h"

namespace mxward {

namespace {

// RFC 5322 date ("Mon, 23 Nov 2026 12:00:05 +0000").
std::string MailDate(UnixMicros now) {
  const time_t t = static_cast<time_t>(now / kMicrosPerSecond);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

}  // namespace

bool PlausibleMailAddress(std::string_view a) {
  if (a.empty() || a.size() > 254 || a.find('@') == std::string_view::npos) return false;
  for (char c : a) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '<' || c == '>' || c == ',' || c == '"') return false;
  }
  return true;
}

std::string RenderMailMessage(const MailOptions& options, const std::vector<std::string>& to,
                              const std::string& subject, const Incident& incident,
                              const std::vector<ActionRecord>& actions,
                              const std::string& message_id, UnixMicros now) {
  std::string to_line;
  for (const std::string& t : to) to_line += (to_line.empty() ? "" : ", ") + t;
  std::string m;
  m += "Date: " + MailDate(now) + "\r\n";
  m += "From: " + options.from + "\r\n";
  m += "To: " + to_line + "\r\n";
  m += "Subject: " + OneLine(subject, 200) + "\r\n";
  m += "Message-ID: <" + message_id + ">\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "Auto-Submitted: auto-generated\r\n";
  m += "\r\n";
  auto line = [&m](std::string_view text) {
    m += OneLine(text, 990);
    m += "\r\n";
  };
  line(fmt::format("Incident #{}: {}", incident.id, incident.playbook));
  if (!incident.description.empty()) line(incident.description);
  line("");
  line(fmt::format("Severity:   {}", SeverityName(incident.severity)));
  line(fmt::format("Key:        {} {}", incident.key_kind, incident.key));
  line(fmt::format("Trigger:    {}", incident.trigger));
  line(fmt::format("Count:      {} in {}", incident.count,
                   FormatDurationSeconds(incident.window_seconds)));
  line(fmt::format("First seen: {}", FormatRfc3339(incident.first_seen)));
  line(fmt::format("Last seen:  {}", FormatRfc3339(incident.last_seen)));
  if (!options.incident_url.empty())
    line("Link:       " + IncidentLink(options.incident_url, incident.id));
  if (!actions.empty()) {
    line("");
    line("Actions:");
    for (const ActionRecord& a : actions) {
      line(fmt::format("  #{} {}{} {}: {}", a.id, a.revert ? "undo " : "", a.type,
                       a.params.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       ActionStatusName(a.status)));
    }
  }
  if (!incident.evidence.empty()) {
    line("");
    line("Evidence:");
    for (const EvidenceLine& e : incident.evidence) line("  " + e.text);
  }
  line("");
  line(fmt::format("-- mxward; review with: mxward incidents show {}", incident.id));
  return m;
}

Result<MailOptions> MailOptions::FromConfig(const Config& config,
                                            std::vector<Diagnostic>* diagnostics) {
  MailOptions o;
  if (!config.document.contains("mail")) return o;
  const toml::table* t = SectionTable(config, "mail", diagnostics);
  if (!t) return Status::InvalidArgument(diagnostics->back().ToString());
  SettingsReader r(*t, "[mail]", config.source, diagnostics);
  r.CheckKnownKeys({"url", "from", "to", "username", "password_file", "starttls", "verify_tls",
                    "ca_file", "timeout", "incident_url"});
  r.String("url", &o.url);
  if (const toml::node* u = t->get("url"); !u) {
    r.Error(*t, "[mail] needs a url (smtp://host:25, smtp://host:587 with starttls, smtps://...)");
  } else if (o.url.rfind("smtp://", 0) != 0 && o.url.rfind("smtps://", 0) != 0) {
    r.Error(*u, "'url' must start with smtp:// or smtps://");
  }
  r.String("from", &o.from);
  if (const toml::node* f = t->get("from"); !f || !PlausibleMailAddress(o.from)) {
    r.Error(f ? *f : static_cast<const toml::node&>(*t), "[mail] needs from = \"mxward@host\"");
  }
  if (const toml::node* to = t->get("to")) {
    const toml::array* arr = to->as_array();
    if (!arr || arr->empty()) {
      r.Error(*to, "'to' must be a non-empty array of addresses");
    } else {
      for (const toml::node& e : *arr) {
        auto s = e.value_exact<std::string>();
        if (!s) {
          r.TypeError(e, "to", "only strings in the array");
        } else if (!PlausibleMailAddress(*s)) {
          r.Error(e, "'to' must contain addresses like \"admin@example.org\"");
        } else {
          o.to.push_back(*s);
        }
      }
    }
  } else {
    r.Error(*t, "[mail] needs to = [\"admin@example.org\"]");
  }
  r.String("username", &o.username);
  ReadSecretSetting(r, "password_file", &o.password);
  r.Bool("starttls", &o.starttls);
  r.Bool("verify_tls", &o.verify_tls);
  r.String("ca_file", &o.ca_file);
  if (!o.ca_file.empty() && ::access(o.ca_file.c_str(), R_OK) != 0) {
    r.Error(*t->get("ca_file"),
            fmt::format("cannot read ca_file {}: {}", o.ca_file, std::strerror(errno)));
  }
  r.DurationMillis("timeout", &o.timeout_ms);
  r.String("incident_url", &o.incident_url);
  if (!r.ok()) return Status::InvalidArgument("errors in [mail]");
  return o;
}

MailNotifier::MailNotifier(MailOptions options, std::string store_path, const Clock* clock)
    : options_(std::move(options)), store_path_(std::move(store_path)), clock_(clock) {}

MailNotifier::~MailNotifier() { Stop(); }

Status MailNotifier::Start() { return EnsureCurlGlobalInit(); }

void MailNotifier::Stop() { store_.reset(); }

Status MailNotifier::Revert(const ActionRecord&) { return Status::Ok(); }

Result<bool> MailNotifier::Check(const ActionRecord&) { return true; }

namespace {

struct Upload {
  const std::string* data;
  std::size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  const std::size_t room = size * n;
  const std::size_t left = u->data->size() - u->offset;
  const std::size_t take = std::min(room, left);
  std::memcpy(buffer, u->data->data() + u->offset, take);
  u->offset += take;
  return take;
}

}  // namespace

Status MailNotifier::Apply(const ActionRecord& action) {
  MXWARD_RETURN_IF_ERROR(Start());
  std::vector<std::string> to = options_.to;
  if (auto it = action.params.find("to"); it != action.params.end()) {
    std::vector<std::string> given;
    if (it->is_string()) given.push_back(it->get<std::string>());
    if (it->is_array()) {
      for (const auto& e : *it) {
        if (e.is_string()) given.push_back(e.get<std::string>());
      }
    }
    for (const std::string& a : given) {
      if (!PlausibleMailAddress(a)) {
        return Status::InvalidArgument(fmt::format("mail: '{}' is not an address", OneLine(a, 80)));
      }
    }
    if (!given.empty()) to = std::move(given);
  }
  if (to.empty()) {
    return Status::InvalidArgument("mail: no recipient: the action has no 'to' and [mail] no 'to'");
  }
  auto incident = LoadIncidentForAction(action, [this]() -> Result<IncidentStore*> {
    if (!store_) {
      auto s = IncidentStore::Open(store_path_);
      if (!s.ok()) return s.status();
      store_ = std::move(*s);
    }
    return store_.get();
  });
  if (!incident.ok()) return incident.status();
  std::string subject;
  if (auto it = action.params.find("subject"); it != action.params.end() && it->is_string()) {
    subject = it->get<std::string>();
  }
  if (subject.empty()) {
    const Incident& inc = incident->first;
    subject = fmt::format("[mxward] {} {}: {} {}", SeverityName(inc.severity), inc.playbook,
                          inc.key_kind, inc.key);
  }
  const std::string domain = options_.from.substr(options_.from.find('@') + 1);
  const std::string message =
      RenderMailMessage(options_, to, subject, incident->first, incident->second,
                        action.idempotency_key + "@" + domain, clock_->Now());

  CURL* c = curl_easy_init();
  if (!c) return Status::Internal("mail: curl_easy_init failed");
  curl_slist* rcpt = nullptr;
  for (const std::string& t : to) rcpt = curl_slist_append(rcpt, ("<" + t + ">").c_str());
  Upload upload{&message};
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, ("<" + options_.from + ">").c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, &ReadUpload);
  curl_easy_setopt(c, CURLOPT_READDATA, &upload);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<std::int64_t>(options_.timeout_ms, 10'000)));
  if (options_.starttls) curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.username.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, options_.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, options_.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(c);
  if (rc == CURLE_OK) return Status::Ok();
  if (rc == CURLE_LOGIN_DENIED) {
    // Retrying cannot fix a wrong password; say what to check.
    return Status::PermissionDenied(fmt::format(
        "mail via {}: the server refused the login of user '{}'{}: check [mail] username and "
        "password_file",
        options_.url, OneLine(options_.username, 80), code ? fmt::format(" (SMTP {})", code) : ""));
  }
  const std::string what =
      fmt::format("mail via {}: {}{}", options_.url, error[0] ? error : curl_easy_strerror(rc),
                  code ? fmt::format(" (SMTP {})", code) : "");
  if (code >= 400 && code < 500) return Status::Unavailable(what);  // greylisting, busy
  if (code >= 500 || rc == CURLE_LOGIN_DENIED || rc == CURLE_URL_MALFORMAT ||
      rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_PEER_FAILED_VERIFICATION ||
      rc == CURLE_USE_SSL_FAILED) {
    return Status::InvalidArgument(what);
  }
  return Status::Unavailable(what);
}

}  // namespace mxward
