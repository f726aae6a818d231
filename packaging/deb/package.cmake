# The Debian package: `cpack -G DEB` in a build dir that included this file builds mxward_<v>_<arch>.deb.
#
# Include it from the top-level CMakeLists.txt after the mxward target and its install() rule:
#
#     include(packaging/deb/package.cmake)
#
# Layout (docs/operations.md, "Package layout"):
#   /usr/sbin/mxward                              the binary (the top-level install(TARGETS))
#   /etc/mxward/mxward.toml                       conffile, root:mxward 0640 after postinst
#   /etc/mxward/rules.d/*.toml, parsers/*.toml    shipped playbooks and parsers, conffiles
#   /etc/rsyslog.d/60-mxward.conf.disabled        rsyslog forwarding, off until renamed
#   /etc/rsyslog.d/60-mxward-trusted.conf.disabled the same with the writer's uid (provenance)
#   /lib/systemd/system/mxward.service            the unit
#   /usr/share/man/man8/mxward.8.gz               mxward(8)
#   /usr/share/doc/mxward/                        README, operations, benchmarks, copyright,
#                                                 changelog, Grafana dashboard
#   /usr/share/doc/mxward/examples/dovecot/, postfix/   the policy server snippets (docs/policy.md)
#   /usr/share/doc/mxward/examples/rsyslog/       the TLS sender snippets (gtls, ossl) for the
#                                                 mail nodes that forward to this host
# Every file under /etc is a conffile, so upgrades keep local edits (dpkg asks on conflicts).
#
# MXWARD_PREBUILT_BINARY: when set, package that file as /usr/sbin/mxward instead of the
# mxward target (tests/integration/package_test.sh packages an existing build this way, from a
# small wrapper project, without rebuilding the tree).

# ABSOLUTE, not cmake_path(NORMAL_PATH): that leaves a trailing slash, and Ninja then sees
# ".../main//packaging/..." and ".../main/packaging/..." as two outputs of one file.
get_filename_component(_mxward_src ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
set(_mxward_pkg ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${_mxward_pkg})

if(NOT DEFINED PROJECT_VERSION OR PROJECT_VERSION STREQUAL "")
  message(FATAL_ERROR "packaging/deb/package.cmake needs project(... VERSION x.y.z) first")
endif()

# --- files -----------------------------------------------------------------------------------
if(MXWARD_PREBUILT_BINARY)
  # CPACK_STRIP_FILES strips installed targets only: strip this copy as dh_strip would.
  find_program(_mxward_strip NAMES strip REQUIRED)
  execute_process(COMMAND ${_mxward_strip} --remove-section=.comment --remove-section=.note
                          --strip-unneeded -o ${_mxward_pkg}/mxward ${MXWARD_PREBUILT_BINARY}
                  COMMAND_ERROR_IS_FATAL ANY)
  install(PROGRAMS ${_mxward_pkg}/mxward DESTINATION sbin)
endif()

set(_mxward_conffiles /etc/mxward/mxward.toml)
# 0644 here; postinst makes it root:mxward 0640 (the group does not exist before postinst, and
# the packaged file holds no secret: only an admin's edit adds one).
install(FILES ${_mxward_src}/packaging/mxward.toml DESTINATION /etc/mxward)

file(GLOB_RECURSE _mxward_rules CONFIGURE_DEPENDS RELATIVE ${_mxward_src}/rules.d
     ${_mxward_src}/rules.d/*.toml)
list(SORT _mxward_rules)
foreach(f ${_mxward_rules})
  get_filename_component(_dir ${f} DIRECTORY)
  install(FILES ${_mxward_src}/rules.d/${f} DESTINATION /etc/mxward/rules.d/${_dir})
  list(APPEND _mxward_conffiles /etc/mxward/rules.d/${f})
endforeach()
# The directories exist even before any playbook ships: admins add their own files there.
install(DIRECTORY DESTINATION /etc/mxward/rules.d/parsers)

# The rsyslog snippet ships disabled: forwarding mail logs is the admin's decision.
if(EXISTS ${_mxward_src}/packaging/rsyslog/60-mxward.conf)
  install(FILES ${_mxward_src}/packaging/rsyslog/60-mxward.conf DESTINATION /etc/rsyslog.d
          RENAME 60-mxward.conf.disabled)
  list(APPEND _mxward_conffiles /etc/rsyslog.d/60-mxward.conf.disabled)
else()
  message(WARNING "packaging/rsyslog/60-mxward.conf is missing: the package will lack it")
endif()
# Its successor with provenance (the writer's uid from rsyslog's trusted properties, to a unix
# socket), also disabled: use one of the two.
install(FILES ${_mxward_src}/packaging/rsyslog/60-mxward-trusted.conf DESTINATION /etc/rsyslog.d
        RENAME 60-mxward-trusted.conf.disabled)
list(APPEND _mxward_conffiles /etc/rsyslog.d/60-mxward-trusted.conf.disabled)

# The TLS snippets are for the mail nodes that send to this host (docs/ingest.md), not for this
# host's rsyslog: examples, never under /etc/rsyslog.d.
install(FILES ${_mxward_src}/packaging/rsyslog/61-mxward-tls-gtls.conf
              ${_mxward_src}/packaging/rsyslog/61-mxward-tls-ossl.conf
        DESTINATION share/doc/mxward/examples/rsyslog)
# The policy server snippets go into Dovecot's and Postfix's own configuration (docs/policy.md).
install(FILES ${_mxward_src}/packaging/dovecot/95-mxward-policy.conf
        DESTINATION share/doc/mxward/examples/dovecot)
install(FILES ${_mxward_src}/packaging/postfix/main.cf.mxward-policy
        DESTINATION share/doc/mxward/examples/postfix)

install(FILES ${_mxward_src}/packaging/systemd/mxward.service DESTINATION /lib/systemd/system)
install(FILES ${_mxward_src}/packaging/deb/lintian-overrides DESTINATION share/lintian/overrides
        RENAME mxward)

# Debian wants compressed man pages and changelog, made with -n (no name or time in the header)
# so the package is reproducible. Made at configure time; editing the sources reconfigures.
# (configure_file below already makes changelog.in a configure dependency.)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_mxward_src}/packaging/man/mxward.8)
execute_process(COMMAND gzip -9nc ${_mxward_src}/packaging/man/mxward.8
                OUTPUT_FILE ${_mxward_pkg}/mxward.8.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${_mxward_pkg}/mxward.8.gz DESTINATION share/man/man8)

# string(TIMESTAMP) honours SOURCE_DATE_EPOCH.
string(TIMESTAMP _mxward_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(MXWARD_DEB_VERSION ${PROJECT_VERSION}-1)
set(MXWARD_DEB_DATE ${_mxward_date})
configure_file(${_mxward_src}/packaging/deb/changelog.in ${_mxward_pkg}/changelog.Debian @ONLY)
execute_process(COMMAND gzip -9nf ${_mxward_pkg}/changelog.Debian COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${_mxward_pkg}/changelog.Debian.gz ${_mxward_src}/packaging/deb/copyright
        DESTINATION share/doc/mxward)

file(GLOB _mxward_docs CONFIGURE_DEPENDS ${_mxward_src}/docs/*.md)
install(FILES ${_mxward_src}/README.md ${_mxward_docs} DESTINATION share/doc/mxward)
if(EXISTS ${_mxward_src}/packaging/grafana/mxward-dashboard.json)
  install(FILES ${_mxward_src}/packaging/grafana/mxward-dashboard.json
          DESTINATION share/doc/mxward/examples)
endif()

# --- control ---------------------------------------------------------------------------------
list(JOIN _mxward_conffiles "\n" _mxward_conffiles_text)
file(WRITE ${_mxward_pkg}/conffiles "${_mxward_conffiles_text}\n")
foreach(s postinst prerm postrm)
  configure_file(${_mxward_src}/packaging/deb/${s} ${_mxward_pkg}/${s} COPYONLY)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mxward)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# A Debian revision: the package is not "native" (its packaging can change without a release).
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_PACKAGE_CONTACT "mxward maintainers <mxward@example.org>")
set(CPACK_PACKAGE_VENDOR "mxward")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "abuse response for self-hosted mail servers")
set(CPACK_PACKAGE_DESCRIPTION
    "mxward reads the logs of Postfix, Dovecot, Roundcube, OpenDKIM, Amavis and\n\
Rspamd, turns them into typed events, counts them in the sliding windows of\n\
TOML playbooks and acts: nftables bans with kernel timeouts, PostfixAdmin\n\
account suspension, webhooks and admin mail. Every incident, its evidence\n\
and its actions are kept in SQLite for review with the mxward command line.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://mxward.example.org/")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, nftables")
# rsyslog is only suggested: on Debian 12 without it mxward reads the journal by default
# (input_config.h DefaultToJournal); recommending it would install it and turn that default off.
# Grafana is not in Debian: the dashboard JSON is shipped for sites that run it from elsewhere.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "rsyslog, rsyslog-gnutls, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_mxward_pkg}/conffiles ${_mxward_pkg}/postinst ${_mxward_pkg}/prerm ${_mxward_pkg}/postrm)
# Scripts 0755 and conffiles 0644 in control.tar whatever the source tree's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Absolute destinations (/etc, /lib) are intended.
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
set(CPACK_STRIP_FILES ON)
include(CPack)
