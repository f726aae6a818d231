#!/usr/bin/env python3
"""Checks that the source tree keeps its floors (docs/architecture.md).

Every production file (engine/, actions/, include/mxward/) is on one floor. A file may include
headers of its own floor and of the floors its floor is allowed to use; nothing else. Action
backends (nftables, postfixadmin, webhook, mail, exec) are siblings: none includes another, and
none includes the dispatcher or the registry. Public headers in include/mxward/ are assigned to
floors in PUBLIC_HEADERS below; a new public header must be added there (the check fails until
it is), which is the moment to ask whether it belongs in the contract at all.

Usage: check_layers.py [SOURCE_DIR]   exit 0 when every include is allowed, 1 otherwise.
       check_layers.py --self-test    proves the check catches a back-edge and a sibling backend.
"""
import os
import re
import sys

# Floor -> the floors it may include (besides itself). Bottom to top.
ALLOWED = {
    "base": [],
    "model": ["base"],
    "ingest": ["base", "model"],
    "parse": ["base", "model"],
    "rules": ["base", "model", "parse"],
    "store": ["base", "model"],
    "pipeline": ["base", "model", "ingest", "parse", "rules"],
    "control": ["base", "model", "store"],
    "policy": ["base", "model", "parse", "rules"],
    "cluster": ["base", "model", "store"],
    "executor": ["base", "model"],
    "actions-common": ["base", "model", "store", "executor"],
    "dispatch": ["base", "model", "store", "executor", "actions-common"],
    "registry": ["base", "model", "store", "executor", "actions-common", "dispatch",
                 "backend:nftables", "backend:postfixadmin", "backend:webhook", "backend:mail",
                 "backend:exec"],
    "cli": None,  # the top floor: may include every floor
}
BACKENDS = ["nftables", "postfixadmin", "webhook", "mail", "exec"]
for b in BACKENDS:
    ALLOWED["backend:" + b] = ["base", "model", "store", "executor", "actions-common"]

PUBLIC_HEADERS = {
    "base": ["status.h", "time.h", "ip_address.h", "diagnostic.h", "config.h",
             "rate_limited_log.h", "metrics_registry.h", "thread_annotations.h", "version.h",
             "allow_set.h"],
    "model": ["event.h", "incident.h", "baseline.h", "action_types.h", "log_format.h"],
    "ingest": ["line_sink.h", "input_counters.h", "input_config.h", "file_follower.h",
               "journal_follower.h", "syslog_listener.h", "line_origin.h", "provenance.h"],
    "parse": ["syslog_message.h", "syslog_parser.h", "parser_pack.h", "prepared_line.h"],
    "rules": ["playbook.h", "playbook_engine.h"],
    "store": ["incident_store.h", "incident_recorder.h"],
    "pipeline": ["pipeline.h", "parallel_lines.h"],
    "control": ["control_protocol.h", "metrics_server.h"],
    "executor": ["action_executor.h"],
    "dispatch": ["action_dispatcher.h"],
    "registry": ["action_registry.h"],
}
PUBLIC = {h: floor for floor, hs in PUBLIC_HEADERS.items() for h in hs}

ENGINE_FOLDERS = ["base", "model", "ingest", "parse", "rules", "store", "control", "policy",
                  "cluster", "cli"]
ACTION_FOLDERS = {"common": "actions-common", "dispatch": "dispatch", "registry": "registry"}
ACTION_FOLDERS.update({b: "backend:" + b for b in BACKENDS})


def floor_of(path):
    """The floor of a repository-relative path, or None for a path that is on no floor."""
    parts = path.split("/")
    if parts[0] == "include" and len(parts) == 3 and parts[1] == "mxward":
        name = parts[2][:-3] if parts[2].endswith(".h.in") else parts[2]
        return PUBLIC.get(name, "unassigned")
    if parts[0] == "engine":
        if len(parts) == 2:
            return "pipeline" if parts[1] in ("pipeline.cpp", "parallel_lines.cpp") else "unassigned"
        return parts[1] if parts[1] in ENGINE_FOLDERS else "unassigned"
    if parts[0] == "actions":
        if len(parts) == 2:
            return "unassigned"
        return ACTION_FOLDERS.get(parts[1], "unassigned")
    return None


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def check(root):
    """Every include that breaks the floors, as 'path:line: why' lines."""
    problems = []
    checked = 0
    for top in ("engine", "actions", "include"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith((".h", ".cpp", ".h.in")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), root)
                floor = floor_of(path)
                if floor is None:
                    continue
                if floor == "unassigned":
                    problems.append(f"{path}: on no floor: put it in a floor's folder (or, for a "
                                    f"public header, add it to PUBLIC_HEADERS in {__file__})")
                    continue
                text = open(os.path.join(root, path), encoding="utf-8").read()
                for m in INCLUDE.finditer(text):
                    checked += 1
                    target = m.group(1)
                    line = text.count("\n", 0, m.start()) + 1
                    if target.startswith("mxward/"):
                        tfloor = PUBLIC.get(target[len("mxward/"):], "unassigned")
                    elif target.startswith(("engine/", "actions/")):
                        if not os.path.exists(os.path.join(root, target)):
                            problems.append(f"{path}:{line}: includes \"{target}\", which does not "
                                            "exist")
                            continue
                        tfloor = floor_of(target)
                    else:
                        problems.append(f"{path}:{line}: includes \"{target}\": write project "
                                        "headers from the repository root (\"engine/...\", "
                                        "\"actions/...\") or as \"mxward/...\"")
                        continue
                    if tfloor == "unassigned":
                        problems.append(f"{path}:{line}: includes \"{target}\", which is on no "
                                        "floor")
                        continue
                    allowed = ALLOWED[floor]
                    if allowed is None or tfloor == floor or tfloor in allowed:
                        continue
                    problems.append(f"{path}:{line}: floor '{floor}' includes \"{target}\" of "
                                    f"floor '{tfloor}'; '{floor}' may include: "
                                    f"{', '.join([floor] + allowed)}")
    return problems, checked


def self_test():
    """A tiny tree with one allowed include and three forbidden ones; all three must be found."""
    import tempfile
    files = {
        "include/mxward/status.h": "",
        "include/mxward/incident_store.h": '#include "mxward/status.h"\n',  # allowed
        "include/mxward/playbook_engine.h": '#include "mxward/incident_store.h"\n',  # rules->store
        "actions/mail/mail_notifier.cpp": '#include "actions/webhook/incident_text.h"\n',
        "actions/webhook/incident_text.h": "",
        "engine/parse/x.cpp": '#include "../rules/y.h"\n',  # relative path
    }
    with tempfile.TemporaryDirectory() as root:
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write(text)
        problems, _ = check(root)
    expected = ["include/mxward/playbook_engine.h:1", "actions/mail/mail_notifier.cpp:1",
                "engine/parse/x.cpp:1"]
    missing = [e for e in expected if not any(p.startswith(e + ":") for p in problems)]
    extra = [p for p in problems if not any(p.startswith(e + ":") for e in expected)]
    for p in problems:
        print("found:", p)
    if missing or extra:
        print(f"self-test FAILED: missed {missing}, wrongly flagged {extra}")
        return 1
    print("self-test: 3 forbidden includes found, the allowed one passed")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), "..", ".."))
    problems, checked = check(root)
    for p in problems:
        print(p)
    print(f"check_layers: {checked} includes checked, {len(problems)} not allowed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
