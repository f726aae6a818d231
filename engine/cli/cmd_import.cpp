// `mxward import fail2ban [DIR] --out DIR`: writes one playbook per enabled fail2ban mail jail
// (fail2ban_import.h) into the directory the admin names, checks that each compiles, and prints
// what it wrote and every setting it could not carry over. It never overwrites a file unless
// --force is given: the files are named after the shipped playbooks they replace.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "engine/cli/commands.h"
#include "engine/cli/fail2ban_import.h"
#include "mxward/playbook.h"

namespace mxward::cli {

namespace {

struct ImportOptions {
  std::string dir = "/etc/fail2ban";
  std::string out;
  bool force = false;
};

void RunImport(const ImportOptions& o) {
  namespace fs = std::filesystem;
  auto r = ImportFail2ban(o.dir);
  if (!r.ok()) {
    throw CliExit(r.status().code() == Status::Code::kNotFound ? kExitUsage : kExitFailure,
                  r.status().message());
  }
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) throw CliExit(kExitRuntime, fmt::format("cannot create {}: {}", o.out, ec.message()));
  std::printf("read: %s\n", fmt::format("{}", fmt::join(r->files_read, ", ")).c_str());
  int written = 0;
  for (const auto& p : r->playbooks) {
    const fs::path file = fs::path(o.out) / (p.name + ".toml");
    std::vector<Diagnostic> diags;
    if (!CompilePlaybookText(p.toml, file.string(), &diags).ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      throw CliExit(kExitRuntime, fmt::format("internal error: the playbook for [{}] does not "
                                              "compile; please report it",
                                              p.jail));
    }
    if (fs::exists(file, ec) && !o.force) {
      std::printf("skipped: [%s] -> %s exists (use --force to replace it)\n", p.jail.c_str(),
                  file.c_str());
      continue;
    }
    std::ofstream f(file);
    f << p.toml;
    f.close();
    if (!f) throw CliExit(kExitRuntime, fmt::format("cannot write {}", file.string()));
    std::printf("wrote: [%s] -> %s\n", p.jail.c_str(), file.c_str());
    ++written;
  }
  if (!r->not_carried.empty()) {
    std::printf("not carried over:\n");
    for (const auto& n : r->not_carried) std::printf("  %s\n", n.c_str());
  }
  std::printf("%d playbook(s) written to %s; check them with `mxward check --rules %s`\n", written,
              o.out.c_str(), o.out.c_str());
}

}  // namespace

void AddImportCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("import", "Import configuration from other tools");
  cmd->require_subcommand(1);
  auto opts = std::make_shared<ImportOptions>();
  CLI::App* f2b = cmd->add_subcommand(
      "fail2ban",
      "Write a playbook for each enabled fail2ban mail jail (postfix, postfix-rbl, postfix-sasl, "
      "dovecot, sieve, roundcube-auth; recidive as escalation) and list what could not be "
      "carried over");
  f2b->add_option("dir", opts->dir, "fail2ban configuration directory")->capture_default_str();
  f2b->add_option("--out", opts->out, "directory to write the playbooks into")->required();
  f2b->add_flag("--force", opts->force, "replace existing files");
  f2b->callback([opts] { RunImport(*opts); });
}

}  // namespace mxward::cli
