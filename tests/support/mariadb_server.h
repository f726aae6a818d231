// Test support: a real MariaDB server of the test's own, in a temp dir, on 127.0.0.1 and a free
// port, with password authentication (a user is created; grant tables are in force).
//
//   MariadbServer server;
//   ASSERT_EQ(server.Start(), "");                 // "" or what went wrong, with the server log
//   server.Sql("CREATE DATABASE x");               // as root over the unix socket
//   server.Stop();  server.Start();                // the same data dir: a restart
//
// Debian's mariadb-server package provides mariadb-install-db and mariadbd; the destructor stops
// the server and the temp dir goes with it. Header-only.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "support/server_process.h"
#include "support/subprocess.h"

namespace mxward::testing {

class MariadbServer {
 public:
  MariadbServer() = default;
  ~MariadbServer() { Stop(); }

  const std::string& socket() const { return socket_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_.path(); }

  // Initialises the data dir on first call, then starts mariadbd and waits (polling a connect,
  // with a deadline) until it accepts connections.
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
    const std::string data = dir_.file("data");
    socket_ = dir_.file("mysqld.sock");
    // Each server has its own tmpdir: in the shared /tmp, two bootstraps running at once (tests
    // run in parallel, some in their own PID namespace) can pick the same temporary table name
    // and one removes the other's ("Could not remove temporary table", seen in CI).
    const std::string tmp = dir_.file("tmp");
    mkdir(tmp.c_str(), 0700);
    if (!initialised_) {
      auto r = RunCommand({"mariadb-install-db", "--no-defaults", "--datadir=" + data,
                           "--user=root", "--auth-root-authentication-method=normal",
                           "--skip-test-db", "--tmpdir=" + tmp});
      if (r.exit_code != 0) {
        return "mariadb-install-db failed (is the mariadb-server package installed?): " + r.out +
               r.err;
      }
      initialised_ = true;
    }
    // mariadbd refuses to run as root unless told to; the test runs as root, as CI does.
    const std::vector<std::string> argv = {"/usr/sbin/mariadbd",
                                           "--no-defaults",
                                           "--datadir=" + data,
                                           "--socket=" + socket_,
                                           "--tmpdir=" + tmp,
                                           "--port=" + std::to_string(port_),
                                           "--bind-address=127.0.0.1",
                                           "--user=root",
                                           "--pid-file=" + dir_.file("mariadbd.pid"),
                                           "--skip-log-bin",
                                           "--innodb-buffer-pool-size=16M",
                                           "--innodb-log-file-size=8M",
                                           "--skip-name-resolve",
                                           "--log-error=" + dir_.file("mariadbd.err")};
    if (!process_.Start(argv, dir_.file("mariadbd.out"))) return "cannot fork mariadbd";
    const bool up = WaitUntil(
        std::chrono::seconds(60), [&] { return Sql("SELECT 1").exit_code == 0; },
        [&] { return !process_.running(); });
    if (!up) {
      std::string log = ServerProcess::ReadFile(dir_.file("mariadbd.err"));
      Stop();
      return "mariadbd did not become ready: " + log;
    }
    return "";
  }

 public:
  void Stop() { process_.Stop(); }

  // Runs SQL as root through the mariadb client over the unix socket.
  CommandResult Sql(const std::string& sql, const std::string& database = "") {
    std::vector<std::string> argv = {
        "mariadb",     "--no-defaults", "--protocol=socket",  "--socket=" + socket_,
        "--user=root", "--batch",       "--skip-column-names"};
    if (!database.empty()) argv.push_back("--database=" + database);
    argv.push_back("--execute=" + sql);
    return RunCommand(argv);
  }

  // Runs a file of SQL (a schema) as root in `database`.
  CommandResult SqlFile(const std::string& path, const std::string& database) {
    return RunCommand({"mariadb", "--no-defaults", "--protocol=socket", "--socket=" + socket_,
                       "--user=root", "--database=" + database},
                      ReadWholeFile(path));
  }

  static std::string ReadWholeFile(const std::string& path) {
    std::string out;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return out;
  }

 private:
  TempDir dir_;
  ServerProcess process_;
  std::string socket_;
  int port_ = -1;
  bool initialised_ = false;
};

}  // namespace mxward::testing
