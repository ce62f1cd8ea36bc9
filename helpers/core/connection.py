"""Connection settings in one place: open a named AMQP connection, explain a failure, mask a URL.

Kept apart from ``broker.py`` (which starts and stops nodes) so that a worker process, which
only ever connects, starts without importing what it does not need.
"""
from __future__ import annotations

import urllib.parse
from typing import Sequence

from helpers.errors import BadInputError, BrokerAuthError, BrokerConnectionError


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (safe to print or log).

    Several URLs separated by commas come back so, each masked.
    """
    if "," in url:
        return ",".join(mask_url(one) for one in url.split(","))
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_list(urls: str | Sequence[str]) -> list[str]:
    """Broker URLs as a list: a sequence, or one string listing them separated by commas."""
    if isinstance(urls, str):
        urls = urls.split(",")
    found = [url.strip() for url in urls if url and url.strip()]
    if not found:
        raise BadInputError("No broker URL given: pass one AMQP URL or a list of them "
                            "(AMQP_URL may list several, separated by commas).")
    return found



def rotated(urls: str | Sequence[str], k: int) -> list[str]:
    """``urls`` starting from the ``k``-th (modulo their number): spreads clients over nodes."""
    found = url_list(urls)
    k %= len(found)
    return found[k:] + found[:k]


def first_to(urls: str | Sequence[str], host_port: str) -> list[str]:
    """``urls`` with the one(s) at ``host_port`` (``"127.0.0.1:5672"``) moved to the front."""
    def at(url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        default = 5671 if parts.scheme == "amqps" else 5672
        return f"{parts.hostname}:{parts.port or default}" == host_port
    found = url_list(urls)
    return sorted(found, key=lambda url: not at(url))


def connect(url: str | Sequence[str], name: str = "helpers", heartbeat: int | None = None,
            attempts: int = 1):
    """Open a ``pika.BlockingConnection`` to ``url``, named ``name`` in the management UI.

    ``url`` may be a list of URLs (the nodes of a cluster), or one string of them separated
    by commas: the connection goes to the first that answers, in order; ``attempts`` counts
    passes over the whole list. Connection failures become one-sentence
    ``BrokerConnectionError``s.
    """
    import pika
    import pika.exceptions as pe

    every = []
    for one in url_list(url):
        params = pika.URLParameters(one)
        params.client_properties = {"connection_name": name}
        params.connection_attempts = attempts  # pika reads the last one's, for the whole list
        params.retry_delay = 0.2
        params.blocked_connection_timeout = 30
        if heartbeat is not None:
            params.heartbeat = heartbeat
        every.append(params)
    try:
        return pika.BlockingConnection(every[0] if len(every) == 1 else every)
    except pe.AMQPConnectionError as exc:
        raise explain_connect_error(url, exc) from exc


def refusal_is_final(exc: Exception) -> bool:
    """True when pika's failure ``exc`` is the broker refusing credentials or virtual host.

    Retrying cannot mend those. Two look alike and can: a virtual host that "is down" (541,
    while a node boots or recovers it) and a connection lost in the middle of the handshake
    (pika then guesses a credentials or access problem from the stage it had reached).
    """
    import pika.exceptions as pe

    if not isinstance(exc, (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError)):
        return False
    text = str(exc)  # pika keeps only the repr of what ended the handshake
    return "ConnectionClosedByBroker" in text and "is down" not in text


def explain_connect_error(url: str | Sequence[str], exc: Exception) -> BrokerConnectionError:
    """The one-sentence error for pika's failure ``exc`` to connect to ``url`` (or URLs)."""
    import pika
    import pika.exceptions as pe

    urls = url_list(url)
    where = (f"the broker at {mask_url(urls[0])}" if len(urls) == 1 else
             "the brokers at " + ", ".join(mask_url(one) for one in urls))
    if isinstance(exc, pe.ProbableAccessDeniedError) and "is down" in str(exc):
        vhost = pika.URLParameters(urls[-1]).virtual_host
        return BrokerConnectionError(
            f"The virtual host '{vhost}' on {where} is down (the node is starting or "
            "recovering it): try again in a few seconds, or see the broker's log.")
    final = refusal_is_final(exc)  # else a handshake cut short: "could not connect", below
    if final and isinstance(exc, pe.ProbableAuthenticationError):
        return BrokerAuthError(
            f"{where[0].upper()}{where[1:]} refused the user name or password: "
            "check the credentials in AMQP_URL.")
    if final and isinstance(exc, pe.ProbableAccessDeniedError):
        vhost = pika.URLParameters(urls[-1]).virtual_host
        return BrokerAuthError(
            f"{where[0].upper()}{where[1:]} denied access to the virtual host "
            f"'{vhost}': check that it exists and the user may use it.")
    if len(urls) > 1:
        return BrokerConnectionError(
            f"Could not connect to any of {where}: are they running? "
            "(`python -m helpers cluster status`)")
    return BrokerConnectionError(
        f"Could not connect to {where}: is it running? (`python -m helpers broker status`)")


def describe_error(exc) -> str:
    """A pika exception or close reason in words: ``320 CONNECTION_FORCED - ...``, not a repr."""
    code, text = getattr(exc, "reply_code", None), getattr(exc, "reply_text", None)
    if code is not None:
        return f"{code} {text}" if text else str(code)
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def can_connect(url: str | Sequence[str]) -> bool:
    """True when an AMQP connection to ``url`` opens (readiness is AMQP, never a sleep)."""
    try:
        connect(url, name="helpers-probe").close()
        return True
    except BrokerConnectionError:
        return False
