// NftablesBlocker: the "ban" action. Bans addresses and prefixes in mxward's own nftables table
// through libnftables, with the ban's lifetime as the set element's kernel timeout, so a ban
// expires even when mxward is stopped.
//
// Kernel layout (the table is `inet mxward` by default), chosen so that a new ban costs the same
// with a million bans in place as with none (issue 20), and so that every address is held by the
// longest ban covering it (issue 21, point 4):
//   set_v4        (banned_v4)      hash set, `flags timeout`: single IPv4 addresses
//   set_v4 "_net" (banned_v4_net)  interval set, `flags interval, timeout`: IPv4 prefixes
//   set_v6        (banned_v6)      hash set: single IPv6 addresses
//   set_v6 "_64"  (banned_v6_64)   hash set of /64 networks, matched as `ip6 saddr & ffff:ffff:
//                                  ffff:ffff:: @banned_v6_64` (a /64 is the usual unit of one
//                                  IPv6 host: aggregate_v6 = 64, issue 21's per-/64 keys)
//   set_v6 "_net" (banned_v6_net)  interval set: every other IPv6 prefix
// and one chain with a drop rule per set (every port, or only the mail ports). Adding to a hash
// set needs no read-back of its elements (libnftables reads an interval set's elements into its
// cache before every change, ~2 µs per element), so host and /64 bans cost the same at any set
// size; prefixes are few, and their set is rewritten whole on each change. Host, /64 and prefix
// bans sit in different sets, so a shorter ban never replaces a longer one covering the same
// address: a packet is dropped while any of them holds. Inside the interval set, overlapping
// prefixes are stored as the ranges of their union, each with the longest lifetime of the
// prefixes covering it (a 1-day /16 around a 7-day /24: the /24 for 7 days, the rest for 1 day).
//
// Port scopes (issue 15): every ban covers one scope, its `ports` parameter resolved by
// ResolveScope(): a named port group of [nftables] ("mail" = `ports`, the default and what every
// earlier ban covered; "web" = 80, 443; more in [nftables.port_groups]), "all" (every port and
// protocol), or an explicit list of ports (canonical text "80,443,8080"). Each scope has the five
// sets above of its own and one drop rule per set matching its ports:
//   mail         banned_v4, banned_v4_net, banned_v6, banned_v6_64, banned_v6_net (the names of
//                before port scopes: an upgrade adds sets, it moves no element)
//   group NAME   banned_v4_NAME, banned_v4_NAME_net, ... (group names have no '_')
//   "all"        banned_v4_all, ...                      (no port match: every packet)
//   list 80,8080 banned_v4__80_8080, ...                 (created when the first such ban comes)
// One set per scope rather than one concatenated `ipv4_addr . inet_service` set: restoring a
// million mail bans puts a million elements in the kernel instead of eight million, and prefix
// and /64 bans keep their interval and masked sets (docs/benchmarks.md, "Port scopes").
// The same address banned in two scopes holds two elements with their own lifetimes; a packet is
// dropped when any scope covering its port holds it. Nothing outside the table is touched.
//
// Commands are built only from validated config identifiers (^[A-Za-z][A-Za-z0-9_]{0,31}$),
// integers, and addresses re-printed from binary form (IpPrefix::ToString()); never from log text.
//
// Every ban is also recorded in the incident store (UpsertBan / RemoveBan on store_path, opened
// lazily on first use), so on Start() and whenever the table, a set or a drop rule has
// disappeared (`nft flush ruleset`, `nft delete table`, a reload of nftables.service) or a set has
// the wrong shape (the single interval sets of mxward before issue 20) the table is re-created and
// every unexpired ban restored with its remaining time, all in one transaction.
// Maintain() looks for that damage once a second; the look is a terse listing (no set elements),
// so it costs about the same with 100,000 bans as with none. Elements deleted one by one leave
// the table intact: every `verify_interval` (5 minutes) a thread of the blocker's own lists the
// elements and compares them with the store (kernel_ban_audit.h), and the next Maintain() puts
// back what is missing.
//
// One NftablesBlocker is used from one thread at a time (the dispatcher serialises calls).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/incident_store.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"
#include "mxward/thread_annotations.h"
#include "mxward/time.h"

struct nft_ctx;

namespace mxward {

struct MissingBans;

// The [nftables] section of mxward.toml.
struct NftablesOptions {
  bool enabled = true;
  bool dry_run = false;         // record what would be done, change nothing
  std::string family = "inet";  // inet | ip | ip6 (ip/ip6 use only the matching set)
  std::string table = "mxward";
  std::string chain = "input";
  std::string set_v4 = "banned_v4";
  std::string set_v6 = "banned_v6";
  std::string hook = "input";  // input | forward | prerouting
  int priority = -10;          // before the usual filter chains (priority 0)
  // The "mail" port group. Empty: every packet from a banned address. Otherwise TCP to these.
  std::vector<int> ports = {25, 465, 587, 110, 143, 993, 995, 4190};
  // [nftables.port_groups]: NAME = [ports], for bans whose `ports` names them. "web" is 80 and
  // 443 unless given here; "mail" is `ports` unless given here; "all" is built in.
  std::map<std::string, std::vector<int>> port_groups;
  // Aggregation: once `aggregate_threshold` addresses inside one /aggregate_v4 (IPv4) or
  // /aggregate_v6 (IPv6) prefix are banned, the whole prefix is banned instead. 0 = off.
  int aggregate_v4 = 0;
  int aggregate_v6 = 0;
  int aggregate_threshold = 3;
  std::int64_t default_duration_s = 3600;  // when a ban action has no duration_s
  // How often the kernel's set elements are compared with the store's bans (KernelBanAudit,
  // on a thread of its own: about a second of CPU per 100,000 bans). 0 = never.
  std::int64_t verify_interval_s = 300;

  // Reads [nftables]; unknown keys and bad values are Diagnostics with file:line:col.
  static Result<NftablesOptions> FromConfig(const Config& config,
                                            std::vector<Diagnostic>* diagnostics);
  // The port groups in force: mail, web and those of port_groups (an empty list: every port).
  std::map<std::string, std::vector<int>> Groups() const;
};

// The scope a ban covers and the names of its sets (see the layout above).
struct BanScope {
  std::string name;        // "mail", "web", "all", another group, or "80,443,8080"
  std::string infix;       // between set_v4/set_v6 and the set's suffix: "", "_web", "__80_443"
  std::vector<int> ports;  // TCP destination ports; empty: every packet
};

// NftablesBlocker::ResolveScope() for these options: what `mxward check` asks of a playbook's
// literal `ports` before the executor ever runs.
Result<std::string> ResolveBanScope(const NftablesOptions& options, std::string_view text);

// One ban to put in the kernel: a prefix and its remaining lifetime (0 = no timeout).
struct NftBan {
  IpPrefix prefix;
  std::int64_t timeout_s = 0;
  std::string scope = "mail";  // a BanScope name (ResolveScope)
  // The element may be in its set already, with another timeout: ApplyBatch replaces it (add,
  // delete, add). false: the caller knows it is new (no stored ban of it), one add is enough:
  // a third of the netlink work of a catch-up, whose bans are new.
  bool refresh = true;
};

class NftablesBlocker final : public ActionExecutor, public BatchApplier {
 public:
  NftablesBlocker(NftablesOptions options, std::string store_path, const Clock* clock);
  ~NftablesBlocker() override;
  NftablesBlocker(const NftablesBlocker&) = delete;
  NftablesBlocker& operator=(const NftablesBlocker&) = delete;

  // ActionExecutor: type "ban", params {address, duration_s, ports}. A ban without `ports`
  // covers "mail"; a revert without `ports` lifts the "mail" ban, with `ports = "*"` the
  // address's bans of every scope (`mxward bans remove`).
  // Also "cluster_batch": the kernel work of a batch of decisions received from other cluster
  // nodes (IncidentStore::ApplyClusterBatch wrote their `bans` rows already): its removals, then
  // its bans, each in one nftables transaction.
  bool Handles(std::string_view type) const override;
  // Creates the table if missing and restores every unexpired ban from the store.
  Status Start() override;
  // Adds the element with its timeout (refreshing the timeout of one already there) and records
  // the ban in the store. With aggregation, may ban the enclosing prefix instead.
  Status Apply(const ActionRecord& action) override;
  // BatchApplier: the bans of several actions in one nftables transaction (and one store
  // transaction); one Status per action, each what Apply() would have returned for it.
  std::vector<Status> ApplyMany(const std::vector<const ActionRecord*>& actions) override;
  bool Batchable(const ActionRecord& action) const override {
    return !action.revert && action.type == "ban";
  }
  // Deletes the element (no error when it is already gone) and removes it from the store.
  Status Revert(const ActionRecord& action) override;
  // Whether the address is in the kernel set (it is also true when a prefix covering it is).
  Result<bool> Check(const ActionRecord& action) override;
  void Stop() override;
  // Repairs the table when something outside mxward removed it or a part of it: re-creates it and
  // restores the store's unexpired bans (one transaction, one log line with the count). Does
  // nothing, cheaply, while the table is intact.
  Status Maintain() override;

  // --- lower-level API, used by the executor methods, the CLI and tests ------------------------
  // Adds or refreshes many bans in one nftables transaction (no store writes). Prefix bans join
  // the prefixes already in force (as RestoreBans() or earlier calls left them).
  Status ApplyBatch(const std::vector<NftBan>& bans);
  // Deletes many bans of `scope` ("*": of every scope) in one transaction; bans not in the kernel
  // are ignored.
  Status RemoveBatch(const std::vector<IpPrefix>& prefixes, const std::string& scope = "mail");
  // The canonical scope of a ban's `ports` text ("web", "mail,8080", "443 , 80"): a group's name
  // when it is exactly one group's ports, "all" when it includes "all" or an every-port group,
  // else the sorted port list "80,443". Empty text is "mail". InvalidArgument for an unknown
  // group or a bad port number.
  Result<std::string> ResolveScope(std::string_view text) const;
  // The sets of a canonical scope name (a group, "all", or a port list); NotFound for a group
  // that is no longer configured.
  Result<BanScope> ScopeOf(const std::string& name) const;
  // Deletes and re-creates the table, chain, sets and rules, then adds every ban whose `until`
  // is after now (or 0), with its remaining time as timeout; all in one transaction.
  Status RestoreBans(const std::vector<BanRecord>& bans, UnixMicros now);
  // Re-creates the table and restores the store's bans if the table, one of its sets or one of
  // its drop rules is gone or has the wrong shape. *recreated (may be null) tells whether it did.
  Status EnsureTable(bool* recreated);
  // What is missing from the table ("table inet mxward", "set banned_v6", "the drop rule for
  // @banned_v4", ...), or "" when it is intact. Lists the ruleset without set elements.
  Result<std::string> FindDamage();
  // Whether a host, /64 or prefix element of `scope` ("*": of any scope) holds the address.
  Result<bool> IsBanned(const IpAddress& address, const std::string& scope = "*");
  // One element audit (kernel_ban_audit.h) on the calling thread: reads the store's bans, lists
  // the table's elements and leaves what is missing for the next Maintain() to put back. The
  // audit thread calls it every verify_interval; tests call it directly (with the interval 0).
  // Not on the thread that calls the executor methods: it uses a context and a store connection
  // of its own, and the listing takes ~1 s per 100,000 bans.
  Status AuditElements() EXCLUDES(audit_mu_);
  // Bans put back by Maintain() after an audit found them missing, since the start.
  std::uint64_t elements_repaired() const { return elements_repaired_; }

  const NftablesOptions& options() const { return options_; }
  // In dry-run: every nft command that would have run, in order.
  const std::vector<std::string>& dry_run_commands() const { return dry_run_commands_; }

 private:
  // A ban action turned into its kernel element (after aggregation) and its store record.
  struct PreparedBan {
    NftBan kernel;
    BanRecord record;
  };
  Result<PreparedBan> PrepareBan(const ActionRecord& action);
  // Apply() of a cluster_batch action: its ops from the store into the kernel, then forgotten.
  Status ApplyClusterBatch(const ActionRecord& action);
  // The kernel elements of `bans` in one transaction (re-creating a missing table first), then
  // their store records in one store transaction.
  Status ApplyPrepared(const std::vector<PreparedBan>& bans);
  Status Run(const std::string& commands);  // one transaction; errors carry nft's message
  Result<IncidentStore*> Store();
  std::string TableCommands() const;  // add table/chain, then every scope's sets and rules
  std::string ScopeCommands(const BanScope& scope) const;  // add one scope's sets and rules
  // scopes_ with "mail" first: the rules' order, and the order FindDamage() reports in.
  std::vector<const BanScope*> OrderedScopes() const;
  // The set of `scope` for a ban of `prefix` (SetSuffix picks which of the five).
  std::string SetName(const BanScope& scope, const IpPrefix& prefix) const;
  // "add element" commands for host and /64 bans (prefix bans are left to NetCommands).
  std::string ElementCommands(const std::vector<NftBan>& bans) const;
  // Rewrites the interval sets of the (scope, family 4|6) pairs in `which` from network_bans_:
  // flush (unless `fresh`), then the ranges of their union with the longest lifetime each.
  std::string NetCommands(const std::set<std::pair<std::string, int>>& which, UnixMicros now,
                          bool fresh) const;
  // Puts scope `name` in scopes_ (resolving a port list); *added tells whether it was new.
  Status AddScope(const std::string& name, bool* added);
  // Loads network_bans_ from the store if nothing has set it yet.
  Status LoadNetworkBans();
  // The ban's kind of set: "" (host), "_64" (IPv6 /64), "_net" (any other prefix).
  const char* SetSuffix(const IpPrefix& prefix) const;
  // Reads the store's unexpired bans and rebuilds the table with them; logs why and how many.
  Status RestoreFromStore(const std::string& why);
  // The set a ban of `scope` and `prefix` goes to, "" for a scope that is not configured. Reads
  // only options_, so the audit thread may call it.
  std::string SetOfBan(const std::string& scope, const IpPrefix& prefix) const;
  // Remembers that the lane changed the kernel element of (scope, prefix) now, while audits run.
  void Touch(const std::string& scope, const IpPrefix& prefix, UnixMicros now);
  // On the lane (Maintain): puts back what the last audit found missing, less what the lane
  // touched since shortly before that audit read the store.
  Status RepairFound() EXCLUDES(audit_mu_);
  void StartAudits() EXCLUDES(audit_mu_);  // the audit thread, if verify_interval and not running
  void RunAudits() EXCLUDES(audit_mu_);    // the audit thread's loop
  void StopAudits() EXCLUDES(audit_mu_);

  NftablesOptions options_;
  std::string store_path_;
  const Clock* clock_;
  nft_ctx* ctx_ = nullptr;
  // A second context for FindDamage(): terse JSON output, so listing skips set elements, and its
  // output flags never affect the commands on ctx_.
  nft_ctx* watch_ctx_ = nullptr;
  // After a rebuild that FindDamage() still called damaged (a kernel that lists the table in a
  // form we do not recognise), Maintain() waits until then rather than rebuilding every second.
  UnixMicros maintain_paused_until_ = 0;
  std::string last_output_;  // what the last command printed (list tables)
  std::unique_ptr<IncidentStore> store_;
  std::vector<std::string> dry_run_commands_;
  // The scopes whose sets and rules are in the table: every configured group and "all", and
  // the port lists of stored bans. Set by the constructor and RestoreBans(), grown by ApplyBatch.
  std::map<std::string, BanScope> scopes_;
  // The prefix bans in force (neither host nor IPv6 /64) per (scope, address, length) with their
  // end (0 = permanent): the interval sets are computed from these. Set by RestoreBans(), kept by
  // Apply/Revert.
  std::map<std::tuple<std::string, IpAddress, int>, UnixMicros> network_bans_;
  bool network_bans_loaded_ = false;

  // The element audit. The thread owns audit_ctx_ and audit_store_; it hands its finding to the
  // lane through audit_found_. The lane keeps touched_ (a hash of scope and prefix -> when it
  // last added, refreshed or removed that element) and rebuilt_at_, so that a finding never
  // undoes what the lane did after the audit read the store.
  Mutex audit_mu_;
  std::condition_variable_any audit_wake_;
  bool audit_stop_ GUARDED_BY(audit_mu_) = false;
  std::unique_ptr<MissingBans> audit_found_ GUARDED_BY(audit_mu_);
  UnixMicros audit_running_since_ GUARDED_BY(audit_mu_) = 0;  // 0: no audit running
  std::thread audit_thread_;
  nft_ctx* audit_ctx_ = nullptr;
  std::unique_ptr<IncidentStore> audit_store_;
  std::unordered_map<std::uint64_t, UnixMicros> touched_;
  UnixMicros rebuilt_at_ = 0;
  std::uint64_t elements_repaired_ = 0;
  std::atomic<bool> audited_{false};  // an audit ran: the lane records touches from then on
};

// The options of the blocker MakeNftablesBlocker builds when it changes this kernel; nullopt when
// it builds none or one in dry-run (the section absent, disabled or invalid, a dry_run setting,
// no CAP_NET_ADMIN). The cluster link applies received decisions in bulk only then.
std::optional<NftablesOptions> KernelNftablesOptions(const Config& config);

// The executor for [nftables], or a null pointer when the section is absent or `enabled = false`.
// Falls back to dry-run (and says so in `notes`) when the process lacks CAP_NET_ADMIN, when the
// config says `dry_run = true`, or when the global `dry_run` is set.
Result<std::unique_ptr<ActionExecutor>> MakeNftablesBlocker(const Config& config,
                                                            const std::string& store_path,
                                                            std::vector<Diagnostic>* diagnostics,
                                                            std::vector<std::string>* notes);

}  // namespace mxward
