// Builds the parts every log-reading command shares (replay, serve, explain) from a Config:
// the parser pack from <rule dir>/parsers, the playbook engine from the rule dirs. Prints
// diagnostics and throws CliExit on errors (this is the CLI edge).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/config.h"
#include "mxward/input_config.h"
#include "mxward/parser_pack.h"
#include "mxward/playbook_engine.h"

namespace mxward {
struct DovecotPolicyServerOptions;
struct PostfixPolicyServerOptions;
}  // namespace mxward

namespace mxward::cli {

// <dir>/parsers for each rule dir that has one.
std::vector<std::string> ParserDirs(const Config& config);
// The parser pack of dirs, with the settings of config that apply to it (trusted_proxies);
// every problem goes to diagnostics as file:line:col (what a reload logs before refusing).
Result<std::shared_ptr<const ParserPack>> LoadParserPack(const std::vector<std::string>& dirs,
                                                         const Config& config,
                                                         std::vector<Diagnostic>* diagnostics);
// As LoadParserPack; prints the diagnostics and exits on errors (start, replay, explain).
std::shared_ptr<const ParserPack> LoadParserPackOrExit(const std::vector<std::string>& dirs,
                                                       const Config& config);
// The playbooks of the config's rule dirs, and their actions checked against the executors'
// sections the way the executors will check them when they run (CheckPlaybookActions): what
// check, serve, replay and a reload all load.
Result<std::unique_ptr<PlaybookEngine>> LoadCheckedPlaybooks(const Config& config,
                                                             std::vector<Diagnostic>* diagnostics);
// What `check` and `serve` warn when a playbook counts only verified lines
// (Playbook::verified_evidence_only: it acts on mailboxes) and nothing configured can give it one:
// every input is udp, tcp, tls or file without `trusted = true`, and no policy server
// authenticates its requests (Dovecot's with a secret, Postfix's through the unix socket). Such a
// playbook would silently count nothing. Empty: nothing to say.
std::string UnverifiableEvidenceWarning(const PlaybookEngine& engine,
                                        const std::vector<InputSpec>& inputs,
                                        const DovecotPolicyServerOptions& dovecot,
                                        const PostfixPolicyServerOptions& postfix);
// What `check`, `serve` and a reload warn for each playbook with `shared = true` when there is no
// [cluster] (file:line:col of the key: it then counts this node's events only, as without it). A
// warning, not an error: the same rules.d can then go to every node before [cluster] does.
std::vector<std::string> SharedWithoutClusterWarnings(const PlaybookEngine& engine,
                                                      bool cluster_enabled);
// Loads the playbooks of serve and replay: config with WithBackendDomains applied.
std::unique_ptr<PlaybookEngine> LoadPlaybooksOrExit(const Config& config);
// config plus PostfixAdmin's domains in local_domains when [rules] local_domains_from_postfixadmin
// asks for them (LocalDomainsFromBackends); when they cannot be read, config as it is and a
// warning. Not used by `mxward check`, which opens no connection.
Config WithBackendDomains(const Config& config);

}  // namespace mxward::cli

namespace mxward {
class IncidentStore;
}

namespace mxward::cli {

// Gives a fresh engine what the store remembers: learned baselines of `novel` playbooks, the
// recent incidents escalation counts and the incidents still in their life (unless with_history
// is false: a reloaded engine adopts the running engine's history instead). Problems are logged,
// not fatal: an engine without history still protects.
void PrimeEngineFromStore(PlaybookEngine* engine, IncidentStore* store, UnixMicros now,
                          bool with_history = true);

}  // namespace mxward::cli
