// MailNotifier: the "mail" action. Sends the admin a plain-text summary of an incident over SMTP
// with libcurl: smtp:// (with STARTTLS required when `starttls = true`) or smtps://, optional
// AUTH with a password read from a file, TLS verification on.
//
// The Message-ID is derived from the action's idempotency key, so a retried delivery is
// recognisable as the same message. Header values built from incident text are stripped of
// control characters (no header injection from a user name or a HELO). SMTP 4xx, connection
// failures and timeouts are transient; 5xx and a refused login are permanent.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward {

// The [mail] section.
struct MailOptions {
  std::string url;  // smtp://host:25, smtp://host:587 (starttls), smtps://host:465
  std::string from;
  std::vector<std::string> to;
  std::string username;
  std::string password;  // from password_file
  bool starttls = false;
  bool verify_tls = true;
  std::string ca_file;  // PEM CA bundle to verify the server against (a private CA); "" = system
  std::int64_t timeout_ms = 30'000;
  std::string incident_url;  // "{id}" replaced by the incident id
  static Result<MailOptions> FromConfig(const Config& config, std::vector<Diagnostic>* diagnostics);
};

// An address for an SMTP envelope or header: local@domain on one line, no angle brackets, commas
// or quotes. Apply refuses any other recipient; `mxward check` asks the same question.
bool PlausibleMailAddress(std::string_view address);

// The whole message (headers and body, CRLF line ends, dot-stuffing left to libcurl).
std::string RenderMailMessage(const MailOptions& options, const std::vector<std::string>& to,
                              const std::string& subject, const Incident& incident,
                              const std::vector<ActionRecord>& actions,
                              const std::string& message_id, UnixMicros now);

class MailNotifier final : public ActionExecutor {
 public:
  MailNotifier(MailOptions options, std::string store_path, const Clock* clock);
  ~MailNotifier() override;
  bool Handles(std::string_view type) const override { return type == "mail"; }
  Status Start() override;
  // params: to (overrides [mail] to), subject, incident_id (when the action has none).
  Status Apply(const ActionRecord& action) override;
  Status Revert(const ActionRecord& action) override;
  Result<bool> Check(const ActionRecord& action) override;
  void Stop() override;

 private:
  MailOptions options_;
  std::string store_path_;
  const Clock* clock_;
  std::unique_ptr<IncidentStore> store_;
};

Result<std::unique_ptr<ActionExecutor>> MakeMailNotifier(const Config& config,
                                                         const std::string& store_path,
                                                         std::vector<Diagnostic>* diagnostics,
                                                         std::vector<std::string>* notes);

}  // namespace mxward
