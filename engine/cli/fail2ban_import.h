// Fail2banImport: turns a fail2ban configuration's enabled mail jails into mxward playbooks
// (`mxward import fail2ban [DIR] --out DIR`).
//
// Reads the jail files the way fail2ban does: jail.conf, jail.d/*.conf, jail.local, then
// jail.d/*.local (each in name order; a later file overrides single keys of an earlier one),
// [DEFAULT] inherited by every jail, %(name)s interpolation, continuation lines and comments.
// For each enabled jail it knows (postfix and its modes, postfix-rbl, postfix-sasl, dovecot,
// sieve, roundcube-auth; recidive becomes escalation across playbooks) it writes the playbook text
// with maxretry, findtime, bantime, bantime.increment (factor, maxtime, overalljails) and
// ignoreip carried over, and lists every setting, custom filter or jail it could not carry.
// Pure: reads the directory, returns text; the CLI writes the files.
#pragma once

#include <string>
#include <vector>

#include "mxward/status.h"

namespace mxward {

struct ImportedPlaybook {
  std::string name;  // file stem in the output directory: the shipped playbook it replaces
  std::string jail;  // the fail2ban jail it came from
  std::string toml;  // the playbook, with comments saying where each value came from
};

struct Fail2banImport {
  std::vector<std::string> files_read;  // in the order fail2ban reads them
  std::vector<ImportedPlaybook> playbooks;
  std::vector<std::string> not_carried;  // "[postfix-sasl] bantime.rndtime = 5m: ..."
};

// dir: fail2ban's configuration directory (/etc/fail2ban). NotFound without a jail.conf.
Result<Fail2banImport> ImportFail2ban(const std::string& dir);

}  // namespace mxward
