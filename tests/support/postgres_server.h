// Test support: a real PostgreSQL 15 server of the test's own, in a temp dir, listening on
// 127.0.0.1 and a free port (and a unix socket in the temp dir), with scram-sha-256 password
// authentication for every connection.
//
// PostgreSQL refuses to run as root, so the cluster belongs to `nobody`: initdb runs through
// runuser, the server is started by ServerProcess as nobody (so it still dies with the test).
//
//   PostgresServer server;
//   ASSERT_EQ(server.Start(), "");
//   server.Sql("CREATE ROLE ...");                 // as the superuser "postgres"
//
// Debian's postgresql-15 package provides the binaries. Header-only.
#pragma once

#include <pwd.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "support/server_process.h"
#include "support/subprocess.h"

namespace mxward::testing {

inline constexpr const char* kPostgresBin = "/usr/lib/postgresql/15/bin";

class PostgresServer {
 public:
  static constexpr const char* kSuperPassword = "mxward-test-superuser";

  PostgresServer() { process_.set_stop_signal(SIGINT); }
  ~PostgresServer() { Stop(); }

  int port() const { return port_; }
  const std::string& socket_dir() const { return socket_dir_; }

  // On the first start the port is picked free; should another process take it before the
  // server binds it (tests run in parallel), the server exits and a new port is tried.
  std::string Start() {
    const bool pick_port = port_ <= 0;
    std::string error;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (pick_port) port_ = FreeLoopbackPort();
      error = StartOnce();
      if (error.empty() || !pick_port || !initialised_) break;
    }
    return error;
  }

 private:
  std::string StartOnce() {
    const passwd* nobody = getpwnam("nobody");
    if (!nobody) return "no 'nobody' user to run PostgreSQL as";
    const std::string data = dir_.file("data");
    socket_dir_ = dir_.file("sock");
    if (!initialised_) {
      const std::string pwfile = dir_.file("pwfile");
      {
        std::ofstream out(pwfile);
        out << kSuperPassword << "\n";
      }
      mkdir(socket_dir_.c_str(), 0700);
      // The whole temp dir is nobody's: initdb and the server run as nobody.
      RunCommand({"chown", "-R", "nobody:", dir_.path()});
      chmod(dir_.path().c_str(), 0755);
      auto r =
          RunCommand({"runuser", "-u", "nobody", "--", std::string(kPostgresBin) + "/initdb",
                      "--pgdata=" + data, "--username=postgres", "--auth=scram-sha-256",
                      "--pwfile=" + pwfile, "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"});
      if (r.exit_code != 0) {
        return "initdb failed (is the postgresql-15 package installed?): " + r.out + r.err;
      }
      initialised_ = true;
    }
    const std::vector<std::string> argv = {std::string(kPostgresBin) + "/postgres",
                                           "-D",
                                           data,
                                           "-k",
                                           socket_dir_,
                                           "-p",
                                           std::to_string(port_),
                                           "-c",
                                           "listen_addresses=127.0.0.1",
                                           "-c",
                                           "fsync=off",
                                           "-c",
                                           "TimeZone=UTC"};
    if (!process_.Start(argv, dir_.file("postgres.log"), static_cast<int>(nobody->pw_uid),
                        static_cast<int>(nobody->pw_gid))) {
      return "cannot fork postgres";
    }
    const bool up = WaitUntil(
        std::chrono::seconds(60), [&] { return Sql("SELECT 1").exit_code == 0; },
        [&] { return !process_.running(); });
    if (!up) {
      std::string log = process_.log();
      Stop();
      return "postgres did not become ready: " + log;
    }
    return "";
  }

  // Fast shutdown (SIGINT): clients are disconnected rather than waited for.

 public:
  void Stop() { process_.Stop(); }

  // Runs SQL as the superuser through psql over TCP (password authentication).
  CommandResult Sql(const std::string& sql, const std::string& database = "postgres") {
    return RunCommand({std::string(kPostgresBin) + "/psql", "--no-psqlrc", "--quiet",
                       "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1", "--host=127.0.0.1",
                       "--port=" + std::to_string(port_), "--username=postgres",
                       "--dbname=" + database, "--command=" + sql},
                      "", {std::string("PGPASSWORD=") + kSuperPassword, "PGCONNECT_TIMEOUT=5"});
  }

  CommandResult SqlFile(const std::string& path, const std::string& database) {
    return RunCommand(
        {std::string(kPostgresBin) + "/psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
         "--host=127.0.0.1", "--port=" + std::to_string(port_), "--username=postgres",
         "--dbname=" + database, "--file=" + path},
        "", {std::string("PGPASSWORD=") + kSuperPassword});
  }

 private:
  TempDir dir_;
  ServerProcess process_;
  std::string socket_dir_;
  int port_ = -1;
  bool initialised_ = false;
};

}  // namespace mxward::testing
