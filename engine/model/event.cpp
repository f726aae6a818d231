#include "mxward/event.h"

namespace mxward {
namespace {

constexpr std::array<std::string_view, kEventTypeCount> kEventTypeNames = {
    "auth_failure",      "auth_success",        "rbl_reject",    "relay_denied",
    "unknown_recipient", "helo_reject",         "sender_reject", "protocol_abuse",
    "message_submitted", "message_queued",      "delivery",      "dkim_verify",
    "spam_verdict",      "virus_found",         "rate_limited",  "spf_check",
    "dmarc_check",       "recipient_submitted",
};

constexpr std::array<std::string_view, kFieldCount> kFieldNames = {
    "client_ip",
    "client_host",
    "sasl_user",
    "user",
    "sender",
    "sender_domain",
    "recipient",
    "recipient_domain",
    "queue_id",
    "service",
    "dkim_result",
    "dkim_domain",
    "spam_score",
    "virus",
    "reason",
    "status",
    "relay",
    "size",
    "nrcpt",
    "attempts",
    "helo",
    "forwarded_for",
    "real_ip",
    "spf_result",
    "spf_identity",
    "spf_domain",
    "header_from_domain",
    "dmarc_result",
    "dmarc_policy",
    "dmarc_disposition",
    "receiver",
    "pwhash",
    "source",
    "session",
    "passdb",
};

}  // namespace

std::string_view EventTypeName(EventType t) { return kEventTypeNames[static_cast<int>(t)]; }

bool ParseEventType(std::string_view name, EventType* out) {
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (kEventTypeNames[i] == name) {
      *out = static_cast<EventType>(i);
      return true;
    }
  }
  return false;
}

std::string_view FieldName(Field f) { return kFieldNames[static_cast<int>(f)]; }

bool ParseFieldName(std::string_view name, Field* out) {
  for (int i = 0; i < kFieldCount; ++i) {
    if (kFieldNames[i] == name) {
      *out = static_cast<Field>(i);
      return true;
    }
  }
  return false;
}

}  // namespace mxward
