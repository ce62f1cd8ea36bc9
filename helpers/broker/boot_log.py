"""What a private node's boot log says went wrong, in one sentence a user can act on.

A node that dies during boot leaves an Erlang crash report in its ``console.log``; the
few causes a user meets on an ordinary machine are recognised here by the term the report
carries, so the error says what to do instead of quoting the VM. Anything else keeps the
log's last lines (``PrivateBroker.start``).
"""
from __future__ import annotations

import re

#: ``{epmd_error,"HOST",nxdomain}``: the node name's host (``localhost`` for a private node)
#: does not resolve, so Erlang distribution cannot start (e.g. no localhost in /etc/hosts).
_UNRESOLVED = re.compile(r'\{epmd_error,\s*"([^"]+)",\s*nxdomain\}')


def known_cause(log_text: str) -> str | None:
    """The one-sentence cause of a failed boot found in ``log_text``, or None."""
    found = _UNRESOLVED.search(log_text)
    if found:
        host = found.group(1)
        return (f"The private RabbitMQ node could not start because the host name {host!r} "
                f"in its node name does not resolve (nxdomain): add the line "
                f"'127.0.0.1 {host}' to /etc/hosts and start it again.")
    return None
