#include "mxward/incident.h"

#include <array>

namespace mxward {
namespace {

template <typename E, std::size_t N>
bool ParseName(const std::array<std::string_view, N>& names, std::string_view name, E* out) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      *out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

constexpr std::array<std::string_view, 4> kSeverity = {"low", "medium", "high", "critical"};
constexpr std::array<std::string_view, 2> kMode = {"enforce", "dry-run"};
constexpr std::array<std::string_view, 3> kIncidentStatus = {"open", "acknowledged", "resolved"};
constexpr std::array<std::string_view, 2> kIncidentOrigin = {"live", "replay"};
constexpr std::array<std::string_view, 6> kActionStatus = {"pending",  "done",    "failed",
                                                           "reverted", "dry_run", "refused"};

}  // namespace

std::string_view SeverityName(Severity s) { return kSeverity[static_cast<int>(s)]; }
bool ParseSeverity(std::string_view n, Severity* out) { return ParseName(kSeverity, n, out); }
std::string_view PlaybookModeName(PlaybookMode m) { return kMode[static_cast<int>(m)]; }
bool ParsePlaybookMode(std::string_view n, PlaybookMode* out) { return ParseName(kMode, n, out); }
std::string_view IncidentStatusName(IncidentStatus s) {
  return kIncidentStatus[static_cast<int>(s)];
}
bool ParseIncidentStatus(std::string_view n, IncidentStatus* out) {
  return ParseName(kIncidentStatus, n, out);
}
std::string_view IncidentOriginName(IncidentOrigin o) {
  return kIncidentOrigin[static_cast<int>(o)];
}
bool ParseIncidentOrigin(std::string_view n, IncidentOrigin* out) {
  return ParseName(kIncidentOrigin, n, out);
}
std::string_view ActionStatusName(ActionStatus s) { return kActionStatus[static_cast<int>(s)]; }
bool ParseActionStatus(std::string_view n, ActionStatus* out) {
  return ParseName(kActionStatus, n, out);
}

}  // namespace mxward
