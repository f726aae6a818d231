#include "actions/webhook/webhook_notifier.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actions/common/curl_global.h"
#include "actions/common/incident_text.h"
#include "engine/base/secret_file.h"
#include "engine/base/settings_reader.h"

namespace mxward {

// --- pure parts ----------------------------------------------------------------------------------

std::string HmacSha256Hex(std::string_view secret, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::int64_t now_unix_s) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' ||
                            value.back() == '\n')) {
    value.remove_suffix(1);
  }
  if (value.empty()) return std::nullopt;
  bool digits = true;
  for (char c : value) digits = digits && c >= '0' && c <= '9';
  if (digits) {
    if (value.size() > 9) return std::chrono::milliseconds(86'400'000);  // absurd: a day
    return std::chrono::milliseconds(std::stoll(std::string(value)) * 1000);
  }
  const std::string text(value);
  const time_t when = curl_getdate(text.c_str(), nullptr);
  if (when < 0) return std::nullopt;
  const std::int64_t delta = static_cast<std::int64_t>(when) - now_unix_s;
  return std::chrono::milliseconds(std::max<std::int64_t>(delta, 0) * 1000);
}

Status WebhookStatusFor(long http_code, const std::string& target) {
  if (http_code >= 200 && http_code < 300) return Status::Ok();
  const std::string what = fmt::format("webhook {}: HTTP {}", target, http_code);
  if (http_code == 408 || http_code == 425 || http_code == 429 || http_code >= 500) {
    return Status::Unavailable(what);
  }
  if (http_code >= 300 && http_code < 400) {
    return Status::InvalidArgument(what + " (redirects are not followed: use the final URL)");
  }
  return Status::InvalidArgument(what + " (the receiver refused the request; not retried)");
}

namespace {

using nlohmann::json;
constexpr auto kReplace = json::error_handler_t::replace;  // log text may not be UTF-8

// Slack mrkdwn treats <...> as links and mentions (<!channel>): escape as Slack documents.
std::string SlackEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '`':
        out += '\'';
        break;  // keeps evidence inside its code block
      default:
        out += c;
    }
  }
  return out;
}

// Teams' Adaptive Card TextBlocks understand a little markdown ([text](url), *, _): neutralise it
// in text that came from logs.
std::string MarkdownEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("\\*_[]()~`>#", c) != nullptr && c != '\0') out += '\\';
    out += c;
  }
  return out;
}

std::string Truncate(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  return s + "...";
}

}  // namespace

std::string RenderWebhookBody(WebhookFormat format, const Incident& incident,
                              const std::vector<ActionRecord>& actions,
                              const std::string& incident_url) {
  const std::string summary = IncidentSummaryLine(incident);
  const std::string link = incident_url.empty() ? "" : IncidentLink(incident_url, incident.id);
  json body;
  switch (format) {
    case WebhookFormat::kJson:
      body = IncidentJson(incident, actions, incident_url);
      break;
    case WebhookFormat::kSlack: {
      std::string evidence;
      const std::size_t n = incident.evidence.size();
      for (std::size_t i = n > 8 ? n - 8 : 0; i < n; ++i) {
        evidence += SlackEscape(incident.evidence[i].text) + "\n";
      }
      json blocks = json::array();
      blocks.push_back({{"type", "header"},
                        {"text",
                         {{"type", "plain_text"},
                          {"text", Truncate(fmt::format("mxward: {} ({})", incident.playbook,
                                                        SeverityName(incident.severity)),
                                            150)}}}});
      blocks.push_back(
          {{"type", "section"},
           {"fields",
            json::array({{{"type", "mrkdwn"},
                          {"text", "*" + SlackEscape(incident.key_kind) + "*\n" +
                                       SlackEscape(Truncate(incident.key, 500))}},
                         {{"type", "mrkdwn"},
                          {"text", fmt::format("*count*\n{} in {}", incident.count,
                                               FormatDurationSeconds(incident.window_seconds))}},
                         {{"type", "mrkdwn"},
                          {"text", "*trigger*\n" + SlackEscape(Truncate(incident.trigger, 500))}},
                         {{"type", "mrkdwn"},
                          {"text", fmt::format("*incident*\n#{} {}", incident.id,
                                               FormatRfc3339(incident.first_seen))}}})}});
      if (!evidence.empty()) {
        blocks.push_back(
            {{"type", "section"},
             {"text", {{"type", "mrkdwn"}, {"text", "```" + Truncate(evidence, 2800) + "```"}}}});
      }
      std::string acts;
      for (const ActionRecord& a : actions) {
        acts +=
            fmt::format("{}{}: {}  ", a.revert ? "undo " : "", a.type, ActionStatusName(a.status));
      }
      json context = json::array();
      if (!acts.empty()) context.push_back({{"type", "mrkdwn"}, {"text", SlackEscape(acts)}});
      if (!link.empty()) {
        context.push_back({{"type", "mrkdwn"}, {"text", "<" + link + "|open incident>"}});
      }
      if (!context.empty()) blocks.push_back({{"type", "context"}, {"elements", context}});
      body = {{"text", SlackEscape(summary)}, {"blocks", std::move(blocks)}};
      break;
    }
    case WebhookFormat::kTeams: {
      json facts = json::array(
          {{{"title", "Key"}, {"value", MarkdownEscape(incident.key_kind + " " + incident.key)}},
           {{"title", "Count"},
            {"value", fmt::format("{} in {}", incident.count,
                                  FormatDurationSeconds(incident.window_seconds))}},
           {{"title", "Trigger"}, {"value", MarkdownEscape(incident.trigger)}},
           {{"title", "Severity"}, {"value", std::string(SeverityName(incident.severity))}},
           {{"title", "First seen"}, {"value", FormatRfc3339(incident.first_seen)}},
           {{"title", "Incident"}, {"value", fmt::format("#{}", incident.id)}}});
      for (const ActionRecord& a : actions) {
        facts.push_back({{"title", fmt::format("Action #{}", a.id)},
                         {"value", fmt::format("{}{}: {}", a.revert ? "undo " : "", a.type,
                                               ActionStatusName(a.status))}});
      }
      std::string evidence;
      const std::size_t n = incident.evidence.size();
      for (std::size_t i = n > 8 ? n - 8 : 0; i < n; ++i) {
        evidence += MarkdownEscape(incident.evidence[i].text) + "\n\n";
      }
      json card_body =
          json::array({{{"type", "TextBlock"},
                        {"size", "Medium"},
                        {"weight", "Bolder"},
                        {"wrap", true},
                        {"text", MarkdownEscape(fmt::format("mxward: {} ({})", incident.playbook,
                                                            SeverityName(incident.severity)))}},
                       {{"type", "FactSet"}, {"facts", std::move(facts)}}});
      if (!evidence.empty()) {
        card_body.push_back({{"type", "TextBlock"},
                             {"fontType", "Monospace"},
                             {"wrap", true},
                             {"size", "Small"},
                             {"text", Truncate(evidence, 4000)}});
      }
      json card = {{"$schema", "http://adaptivecards.io/schemas/adaptive-card.json"},
                   {"type", "AdaptiveCard"},
                   {"version", "1.4"},
                   {"body", std::move(card_body)}};
      if (!link.empty()) {
        card["actions"] =
            json::array({{{"type", "Action.OpenUrl"}, {"title", "Open incident"}, {"url", link}}});
      }
      body = {
          {"type", "message"},
          {"summary", summary},
          {"attachments", json::array({{{"contentType", "application/vnd.microsoft.card.adaptive"},
                                        {"contentUrl", nullptr},
                                        {"content", std::move(card)}}})}};
      break;
    }
  }
  return body.dump(-1, ' ', false, kReplace);
}

// --- configuration -------------------------------------------------------------------------------

Result<WebhookOptions> WebhookOptions::FromConfig(const Config& config,
                                                  std::vector<Diagnostic>* diagnostics) {
  WebhookOptions o;
  const std::size_t before = diagnostics->size();
  ForEachNamedTable(
      config.document, "webhook", "ops", config.source, diagnostics,
      [&](std::string_view name, SettingsReader& r) {
        const toml::table* t = &r.table();
        r.CheckKnownKeys({"url", "format", "headers", "hmac_secret_file", "signature_header",
                          "timeout", "connect_timeout", "verify_tls", "ca_file", "incident_url"});
        WebhookTarget target;
        target.name = std::string(name);
        r.String("url", &target.url);
        if (const toml::node* u = t->get("url"); !u) {
          r.Error(*t, fmt::format("{} needs a url", r.where()));
        } else if (target.url.rfind("https://", 0) != 0 && target.url.rfind("http://", 0) != 0) {
          r.Error(*u, "'url' must start with https:// or http://");
        }
        std::string format = "json";
        r.Choice("format", {"json", "slack", "teams"}, &format);
        target.format = format == "slack"   ? WebhookFormat::kSlack
                        : format == "teams" ? WebhookFormat::kTeams
                                            : WebhookFormat::kJson;
        if (const toml::table* ht = r.Table("headers")) {
          for (const auto& [hk, hv] : *ht) {
            auto v = hv.value_exact<std::string>();
            bool token = !hk.str().empty();
            for (char c : hk.str()) {
              token =
                  token && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
            }
            bool clean = v.has_value();
            if (v) {
              for (char c : *v) clean = clean && c != '\r' && c != '\n' && c != '\0';
            }
            if (!token || !clean) {
              r.Error(hv,
                      "headers must be names of letters, digits and '-' with one-line "
                      "string values");
            } else {
              target.headers.emplace_back(std::string(hk.str()), *v);
            }
          }
        }
        ReadSecretSetting(r, "hmac_secret_file", &target.hmac_secret);
        r.String("signature_header", &target.signature_header);
        r.DurationMillis("timeout", &target.timeout_ms);
        r.DurationMillis("connect_timeout", &target.connect_timeout_ms);
        r.Bool("verify_tls", &target.verify_tls);
        r.String("ca_file", &target.ca_file);
        r.String("incident_url", &target.incident_url);
        o.targets.emplace(target.name, std::move(target));
      });
  if (diagnostics->size() > before) return Status::InvalidArgument("errors in [webhook.*]");
  return o;
}

// --- the executor --------------------------------------------------------------------------------

namespace {

struct ResponseState {
  std::string retry_after;
  std::size_t body_bytes = 0;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* state = static_cast<ResponseState*>(user);
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (std::size_t i = 0; i < kName.size(); ++i) {
      match = match && std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (match) state->retry_after = std::string(line.substr(kName.size()));
  }
  return size * n;
}

size_t OnBody(char*, size_t size, size_t n, void* user) {
  static_cast<ResponseState*>(user)->body_bytes += size * n;  // read and dropped
  return size * n;
}

}  // namespace

WebhookNotifier::WebhookNotifier(WebhookOptions options, std::string store_path)
    : options_(std::move(options)), store_path_(std::move(store_path)) {}

WebhookNotifier::~WebhookNotifier() { Stop(); }

Status WebhookNotifier::Start() {
  if (curl_) return Status::Ok();
  MXWARD_RETURN_IF_ERROR(EnsureCurlGlobalInit());
  curl_ = curl_easy_init();
  if (!curl_) return Status::Internal("webhook: curl_easy_init failed");
  return Status::Ok();
}

void WebhookNotifier::Stop() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
  curl_ = nullptr;
  store_.reset();
}

Result<IncidentStore*> WebhookNotifier::Store() {
  if (!store_) {
    auto s = IncidentStore::Open(store_path_);
    if (!s.ok()) return Status::Unavailable(s.status().message());
    store_ = std::move(*s);
  }
  return store_.get();
}

std::optional<std::chrono::milliseconds> WebhookNotifier::TakeRetryAfter(std::int64_t action_id) {
  if (last_retry_action_ != action_id) return std::nullopt;
  last_retry_action_ = 0;
  return std::exchange(last_retry_after_, std::nullopt);
}

Status WebhookNotifier::Post(const WebhookTarget& target, const std::string& body,
                             const std::string& idempotency_key) {
  MXWARD_RETURN_IF_ERROR(Start());
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the connection cache
  ResponseState response;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "User-Agent: mxward");
  headers = curl_slist_append(headers, "Expect:");
  if (!idempotency_key.empty()) {
    headers = curl_slist_append(headers, ("Idempotency-Key: " + idempotency_key).c_str());
  }
  if (!target.hmac_secret.empty()) {
    headers = curl_slist_append(headers, fmt::format("{}: sha256={}", target.signature_header,
                                                     HmacSha256Hex(target.hmac_secret, body))
                                             .c_str());
  }
  for (const auto& [k, v] : target.headers) {
    headers = curl_slist_append(headers, fmt::format("{}: {}", k, v).c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(target.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(target.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, target.verify_tls ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, target.verify_tls ? 2L : 0L);
  if (!target.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, target.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  if (rc != CURLE_OK) {
    const std::string what =
        fmt::format("webhook {}: {}", target.name, error[0] ? error : curl_easy_strerror(rc));
    switch (rc) {
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CERTPROBLEM:
        return Status::InvalidArgument(what);  // a configuration problem: retrying won't help
      default:
        return Status::Unavailable(what);  // down, refused, timed out, reset: try again later
    }
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  Status st = WebhookStatusFor(code, target.name);
  if (!st.ok() && !response.retry_after.empty()) {
    last_retry_after_ =
        ParseRetryAfter(response.retry_after, static_cast<std::int64_t>(time(nullptr)));
  }
  return st;
}

Status WebhookNotifier::Apply(const ActionRecord& action) {
  last_retry_after_.reset();
  last_retry_action_ = action.id;
  const WebhookTarget* target = nullptr;
  std::string name;
  if (auto it = action.params.find("target"); it != action.params.end() && it->is_string()) {
    name = it->get<std::string>();
    auto t = options_.targets.find(name);
    if (t == options_.targets.end()) {
      return Status::InvalidArgument(
          fmt::format("no [webhook.{}] in mxward.toml for this action", name));
    }
    target = &t->second;
  } else if (options_.targets.size() == 1) {
    target = &options_.targets.begin()->second;
  } else {
    return Status::InvalidArgument("the webhook action names no target and several are configured");
  }
  WebhookFormat format = target->format;
  if (auto it = action.params.find("format"); it != action.params.end() && it->is_string()) {
    const std::string f = it->get<std::string>();
    if (f == "slack") format = WebhookFormat::kSlack;
    if (f == "teams") format = WebhookFormat::kTeams;
    if (f == "json") format = WebhookFormat::kJson;
  }
  auto incident = LoadIncidentForAction(action, [this] { return Store(); });
  if (!incident.ok()) return incident.status();
  const std::string body =
      RenderWebhookBody(format, incident->first, incident->second, target->incident_url);
  return Post(*target, body, action.idempotency_key);
}

Status WebhookNotifier::Revert(const ActionRecord&) { return Status::Ok(); }

Result<bool> WebhookNotifier::Check(const ActionRecord&) { return true; }

}  // namespace mxward
