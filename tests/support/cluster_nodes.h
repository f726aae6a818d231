// Test support: the engine-independent part of the cluster tests (issue 18). Three real
// `mxward serve` nodes, each in a network namespace of its own with its own nftables ruleset,
// reading their own mail log; the derived fixture brings the database (PostgreSQL or MariaDB,
// started by the test) and says how [cluster] reaches it (ClusterSettings). The nodes reach the
// database over its unix socket, which a network namespace does not separate.
//
//   class ClusterFooTest : public testing::ClusterNodesTest {
//     void SetUp() override {
//       ClusterNodesTest::SetUp();                      // skips without root / unshare / nft
//       if (IsSkipped()) return;
//       ... start the database ...
//       MakeNodes();                                   // a, b, c with ClusterSettings()
//     }
//     std::string ClusterSettings() const override { return "dsn = ...\n"; }
//   };
//
// A node's kernel sets are read with `nsenter --net=/proc/<pid>/ns/net nft`. Header-only.
#pragma once

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/subprocess.h"

namespace mxward::testing {

// One mxward node: its directory, config, store, log file and (while running) its process in a
// network namespace of its own.
struct ClusterNode {
  std::string name;
  std::string dir;
  std::string db;
  std::string config;
  std::string socket;
  std::string log;
  std::string maillog;
  std::unique_ptr<ServeProcess> process;
  int starts = 0;
};

class ClusterNodesTest : public ::testing::Test {
 protected:
  using Node = ClusterNode;

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces and nftables";
    if (RunCommand({"unshare", "--net", "true"}).exit_code != 0) {
      GTEST_SKIP() << "cannot make a network namespace (unshare --net)";
    }
    if (RunCommand({"nft", "--version"}).exit_code != 0) GTEST_SKIP() << "nft is not installed";
    secret_ = dir_.file("db.secret");
    std::ofstream(secret_) << "cluster-secret\n";
    chmod(secret_.c_str(), 0600);
    // The daemon binary run inside a new network namespace with lo up; exec keeps the pid, so
    // signals and /proc/<pid>/ns/net reach mxward itself.
    wrapper_ = dir_.file("in-netns.sh");
    std::ofstream(wrapper_) << "#!/bin/sh\nexec unshare --net -- sh -c 'ip link set lo up && exec "
                               "\"$0\" \"$@\"' "
                            << binary_ << " \"$@\"\n";
    chmod(wrapper_.c_str(), 0755);
    rules_ = WriteSaslBanRules(dir_.file("rules"));
  }

  void TearDown() override {
    for (Node& n : nodes_) {
      if (n.process) {
        EXPECT_TRUE(n.process->Stop()) << n.process->Log();
      }
    }
  }

  // The [cluster] lines that reach the database (engine, dsn or host/socket, user, ...), after
  // node = and before password_file =.
  virtual std::string ClusterSettings() const = 0;

  // Nodes a, b and c, configured and not started.
  void MakeNodes() {
    for (const char* name : {"a", "b", "c"}) nodes_.push_back(MakeNode(name));
  }

  Node MakeNode(const std::string& name) {
    Node n;
    n.name = name;
    n.dir = dir_.file("node-" + name);
    std::filesystem::create_directories(n.dir);
    n.db = n.dir + "/state.db";
    n.config = n.dir + "/mxward.toml";
    n.socket = n.dir + "/control.sock";
    n.log = n.dir + "/serve.log";
    n.maillog = n.dir + "/mail.log";
    std::ofstream(n.maillog).close();
    std::ofstream(n.config) << "[nftables]\nenabled = true\n"
                            << "[cluster]\nnode = \"" << name << "\"\n"
                            << ClusterSettings() << "password_file = \"" << secret_ << "\"\n"
                            << "retry_min = \"1s\"\nretry_max = \"2s\"\n"
                            << "[[input]]\ntype = \"file\"\npath = \"" << n.maillog
                            << "\"\nstart_at = \"beginning\"\n";
    return n;
  }

  void StartNode(Node& n) {
    n.process = std::make_unique<ServeProcess>();
    ASSERT_TRUE(n.process->Start(
        wrapper_, {"--db", n.db, "--config", n.config, "--rules", rules_, "--socket", n.socket},
        n.log));
    ++n.starts;
    // "ready:" once per start: the log file is appended to.
    ASSERT_TRUE(n.process->WaitFor([&] {
      const std::string log = n.process->Log();
      int count = 0;
      for (auto p = log.find("ready:"); p != std::string::npos; p = log.find("ready:", p + 1)) {
        ++count;
      }
      return count >= n.starts;
    })) << n.process->Log();
  }

  void StopNode(Node& n) {
    ASSERT_TRUE(n.process->Stop()) << n.process->Log();
    n.process.reset();
  }

  // Appends count SASL failures from addr to the node's mail log.
  static void Attack(const Node& n, const std::string& addr, int count) {
    std::ofstream out(n.maillog, std::ios::app);
    const std::string stamp = SyslogStampNow();
    for (int i = 0; i < count; ++i) {
      out << stamp << " mx-" << n.name << " postfix/submission/smtpd[4101]: warning: unknown["
          << addr << "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    }
  }

  // The JSON listing of one of the node's sets, in the node's own namespace ("" if none).
  static std::string SetJson(const Node& n, const std::string& set) {
    if (!n.process || !n.process->running()) return "";
    const auto r =
        RunCommand({"nsenter", "--net=/proc/" + std::to_string(n.process->pid()) + "/ns/net", "nft",
                    "-j", "list", "set", "inet", "mxward", set});
    return r.exit_code == 0 ? r.out : "";
  }

  // Whether addr is an element of the node's banned_v4 set (or `set`).
  static bool InKernel(const Node& n, const std::string& addr,
                       const std::string& set = "banned_v4") {
    return SetJson(n, set).find("\"" + addr + "\"") != std::string::npos;
  }

  // How many elements of the node's banned_v4 set start with `prefix` ("10.88.").
  static std::size_t KernelCount(const Node& n, const std::string& prefix) {
    const std::string out = SetJson(n, "banned_v4");
    std::size_t count = 0;
    for (auto p = out.find("\"" + prefix); p != std::string::npos;
         p = out.find("\"" + prefix, p + 1)) {
      ++count;
    }
    return count;
  }

  // One number from the node's store (a `SELECT count(*) ...`), -1 if it cannot be read.
  static std::int64_t StoreCount(const Node& n, const std::string& sql) {
    auto store = IncidentStore::Open(n.db, StoreOptions{.read_only = true});
    if (!store.ok()) return -1;
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2((*store)->db(), sql.c_str(), -1, &q, nullptr) != SQLITE_OK) return -1;
    std::int64_t count = -1;
    if (sqlite3_step(q) == SQLITE_ROW) count = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return count;
  }

  CommandResult Cli(const Node& n, std::vector<std::string> args) {
    std::vector<std::string> argv = {binary_,  "--db",     n.db,    "--config",
                                     n.config, "--socket", n.socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  // How many bans (not removals) of addr the node applied: ban actions in its outbox (its own,
  // or a received decision queued as one) and received decisions applied in bulk (one
  // cluster_applied row each, docs/cluster.md "Catching up").
  static std::int64_t BanActions(const Node& n, const std::string& addr) {
    auto store = IncidentStore::Open(n.db, StoreOptions{.read_only = true});
    if (!store.ok()) return -1;
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2((*store)->db(),
                       "SELECT (SELECT count(*) FROM actions WHERE type = 'ban' AND revert = 0 AND "
                       "json_extract(params, '$.address') = ?1) + (SELECT count(*) FROM "
                       "cluster_applied WHERE scope = ?1 AND outcome = 'ban')",
                       -1, &q, nullptr);
    sqlite3_bind_text(q, 1, addr.c_str(), -1, SQLITE_TRANSIENT);
    std::int64_t count = -1;
    if (sqlite3_step(q) == SQLITE_ROW) count = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return count;
  }

  // The lines of a file ("" when it does not exist).
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  TempDir dir_;
  std::string binary_ = MXWARD_BINARY;
  std::string secret_;  // "cluster-secret", the database user's password
  std::string wrapper_;
  std::string rules_;
  std::vector<Node> nodes_;
};

}  // namespace mxward::testing
