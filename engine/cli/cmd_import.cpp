// `mxward import fail2ban [DIR] --out DIR [--replace]`: writes one playbook per enabled fail2ban
// mail jail (fail2ban_import.h) into the directory the admin names, checks that each compiles,
// and prints what it wrote, every setting it could not carry over and the next step.
//
// Names: by default each playbook is named f2b-<shipped name> (f2b-postfix-sasl), so the
// directory loads next to the shipped rules (`--rules /etc/mxward/rules.d --rules OUT`): no
// name clashes, and the parsers come from the shipped directory. --replace writes the shipped
// names instead, over the shipped files, into a rules directory that has its parsers/ (the
// imported playbook then takes the shipped one's place). It never overwrites a file unless
// --force (or --replace, for the shipped names it replaces) is given.
#include <algorithm>
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
  bool replace = false;
};

constexpr std::string_view kImportedPrefix = "f2b-";

void RunImport(const GlobalOptions& globals, const ImportOptions& o) {
  namespace fs = std::filesystem;
  std::error_code exists_ec;
  if (o.replace && !fs::is_directory(fs::path(o.out) / "parsers", exists_ec)) {
    throw CliExit(kExitUsage,
                  fmt::format("--replace writes over the shipped playbooks of a rules directory, "
                              "and {} has no parsers/: name that directory (/etc/mxward/rules.d), "
                              "or leave out --replace to write f2b-* playbooks that load next to "
                              "the shipped ones",
                              o.out));
  }
  const Config config = LoadEffectiveConfig(globals);
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
    const std::string name = o.replace ? p.name : std::string(kImportedPrefix) + p.name;
    const fs::path file = fs::path(o.out) / (name + ".toml");
    std::vector<Diagnostic> diags;
    if (!CompilePlaybookText(p.toml, file.string(), &diags).ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      throw CliExit(kExitRuntime, fmt::format("internal error: the playbook for [{}] does not "
                                              "compile; please report it",
                                              p.jail));
    }
    if (fs::exists(file, ec) && !o.force && !o.replace) {
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
  // The next step: the exact check the daemon will pass, with the directories it will read.
  std::vector<std::string> dirs;
  if (o.replace) {
    dirs = config.rule_dirs;
    const bool listed = std::any_of(dirs.begin(), dirs.end(), [&](const std::string& d) {
      std::error_code eq;
      return fs::equivalent(d, o.out, eq);
    });
    if (!listed) dirs = {o.out};
  } else {
    for (const auto& d : config.rule_dirs) {
      std::error_code eq;
      if (!fs::equivalent(d, o.out, eq)) dirs.push_back(d);
    }
    dirs.push_back(o.out);
  }
  std::string rules_args;
  std::string toml_dirs;
  for (const auto& d : dirs) {
    rules_args += " --rules " + d;
    toml_dirs += (toml_dirs.empty() ? "\"" : ", \"") + d + "\"";
  }
  std::printf("%d playbook(s) written to %s.\n", written, o.out.c_str());
  std::printf("next: mxward check%s\n", rules_args.c_str());
  std::printf("then: set [rules] dirs = [%s] in %s and reload (systemctl reload mxward)\n",
              toml_dirs.c_str(), globals.config_path.c_str());
  if (!o.replace && written > 0) {
    std::printf(
        "note: each f2b-* playbook watches what the shipped playbook of the same name does; keep "
        "one of each pair (delete one, set mode = \"dry-run\", or import with --replace)\n");
  }
}

}  // namespace

void AddImportCommand(CLI::App& app, GlobalOptions& globals) {
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
  f2b->add_flag("--replace", opts->replace,
                "write the shipped playbook names over the shipped files in --out, a rules "
                "directory with parsers/ (default: f2b-* names next to the shipped ones)");
  f2b->callback([&globals, opts] { RunImport(globals, *opts); });
}

}  // namespace mxward::cli
