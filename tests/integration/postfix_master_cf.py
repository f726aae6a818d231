"""The master.cf of the test Postfix that the real-server scripts (real_mail_servers.py,
sender_auth_milters.py) start: Debian's services with chroot off, since each test's Postfix runs
from a directory of its own that holds no chroot tree, and postlogd, since the scripts read
Postfix's lines from `maillog_file`. One copy, so a service both need is added once."""

_SERVICES = """
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Local delivery through Postfix's virtual(8), for a script that keeps what it receives.
_VIRTUAL = "virtual   unix  -       n       n       -       -       virtual\n"


def master_cf(virtual_delivery=False):
    """master.cf's text; with virtual_delivery, the virtual(8) service too."""
    return _SERVICES + (_VIRTUAL if virtual_delivery else "")
