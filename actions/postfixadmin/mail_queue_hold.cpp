#include "actions/postfixadmin/mail_queue_hold.h"

#include <fmt/format.h>

#include "actions/common/argv_command.h"

namespace mxward {

bool MailQueueHold::IsQueueId(std::string_view id) {
  // Short ids are upper-case hex; long ids (enable_long_queue_ids) use a base-52 alphabet plus
  // digits. Accepting only letters and digits is enough to keep any id from being an option.
  if (id.size() < 5 || id.size() > 24) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string> MailQueueHold::HoldArgv(const std::vector<std::string>& queue_ids,
                                                 bool release) const {
  std::vector<std::string> argv = {postsuper_};
  for (const std::string& id : queue_ids) {
    argv.push_back(release ? "-H" : "-h");
    argv.push_back(id);
  }
  return argv;
}

Status MailQueueHold::Run(const std::vector<std::string>& queue_ids, bool release) {
  for (const std::string& id : queue_ids) {
    if (!IsQueueId(id)) {
      return Status::InvalidArgument(fmt::format("'{}' is not a Postfix queue id", id));
    }
  }
  if (queue_ids.empty()) return Status::Ok();
  ArgvCommand command;
  command.argv = HoldArgv(queue_ids, release);
  command.timeout = timeout_;
  auto outcome = RunArgvCommand(command);
  if (!outcome.ok()) return outcome.status();
  return CheckArgvOutcome(command, *outcome);
}

Status MailQueueHold::Hold(const std::vector<std::string>& queue_ids) {
  return Run(queue_ids, false);
}

Status MailQueueHold::Release(const std::vector<std::string>& queue_ids) {
  return Run(queue_ids, true);
}

}  // namespace mxward
