// WebhookNotifier: the "webhook" action. POSTs an incident to an HTTP(S) receiver named in
// mxward.toml ([webhook.NAME]) as generic JSON, a Slack message (blocks) or a Microsoft Teams
// message (Adaptive Card).
//
// Safe to retry: every request carries `Idempotency-Key: <ActionRecord::idempotency_key>`, the
// same for every attempt and across restarts, so a receiver can drop duplicates; with
// hmac_secret_file the body is signed (`X-Mxward-Signature: sha256=<hex HMAC-SHA256 of the
// body>`), the secret read once from a file that must not be readable by others, never logged.
//
// Transport: libcurl, one easy handle reused (keep-alive), TLS verification on unless the target
// says `verify_tls = false`, connect and total timeouts, redirects never followed, http/https
// only. 2xx is done; 408, 429 and 5xx, timeouts and connection failures are transient (the
// dispatcher retries, honouring Retry-After); any other answer is permanent.
//
// The incident (with evidence and its actions) is read from the store by id (the action's
// incident_id, or params.incident_id for an action queued by hand). Used from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/secret_file.h"  // ReadSecretFile, for the secrets of [webhook.NAME]
#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward {

enum class WebhookFormat { kJson, kSlack, kTeams };

// One [webhook.NAME] section.
struct WebhookTarget {
  std::string name;
  std::string url;
  WebhookFormat format = WebhookFormat::kJson;
  std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
  std::string hmac_secret;  // from hmac_secret_file; empty: unsigned
  std::string signature_header = "X-Mxward-Signature";
  std::int64_t timeout_ms = 10'000;  // whole request
  std::int64_t connect_timeout_ms = 5'000;
  bool verify_tls = true;
  std::string ca_file;  // extra CA bundle (private CA); empty: system store
  // Link to the incident in the body; "{id}" is replaced by the incident id.
  std::string incident_url;
};

struct WebhookOptions {
  std::map<std::string, WebhookTarget> targets;
  // Reads every [webhook.NAME]; unknown keys and bad values are Diagnostics with file:line:col.
  static Result<WebhookOptions> FromConfig(const Config& config,
                                           std::vector<Diagnostic>* diagnostics);
};

// The request body for an incident and its actions in a format (pure: no I/O).
std::string RenderWebhookBody(WebhookFormat format, const Incident& incident,
                              const std::vector<ActionRecord>& actions,
                              const std::string& incident_url);
// Lowercase hex of HMAC-SHA256(secret, data).
std::string HmacSha256Hex(std::string_view secret, std::string_view data);
// Retry-After as seconds ("120") or an HTTP date, relative to now_unix_s; nullopt if unreadable.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::int64_t now_unix_s);
// Maps an HTTP answer to a Status: 2xx OK, 408/425/429/5xx transient, others permanent.
Status WebhookStatusFor(long http_code, const std::string& target);

class WebhookNotifier final : public ActionExecutor, public RetryAfterSource {
 public:
  WebhookNotifier(WebhookOptions options, std::string store_path);
  ~WebhookNotifier() override;

  bool Handles(std::string_view type) const override { return type == "webhook"; }
  Status Start() override;
  // params: target (a [webhook.NAME]; may be left out when only one is configured),
  // format (overrides the target's), incident_id (when the action has none).
  Status Apply(const ActionRecord& action) override;
  Status Revert(const ActionRecord& action) override;       // nothing to undo: OK
  Result<bool> Check(const ActionRecord& action) override;  // a sent notification stays sent
  void Stop() override;
  std::optional<std::chrono::milliseconds> TakeRetryAfter(std::int64_t action_id) override;

  // Sends one body to a target (used by Apply; tests call it directly).
  Status Post(const WebhookTarget& target, const std::string& body,
              const std::string& idempotency_key);

 private:
  Result<IncidentStore*> Store();

  WebhookOptions options_;
  std::string store_path_;
  std::unique_ptr<IncidentStore> store_;
  void* curl_ = nullptr;  // CURL*
  std::optional<std::chrono::milliseconds> last_retry_after_;
  std::int64_t last_retry_action_ = 0;
};

// The executor for the [webhook.NAME] sections, or null when there are none (or under the global
// dry_run, with a note).
Result<std::unique_ptr<ActionExecutor>> MakeWebhookNotifier(const Config& config,
                                                            const std::string& store_path,
                                                            std::vector<Diagnostic>* diagnostics,
                                                            std::vector<std::string>* notes);

}  // namespace mxward
