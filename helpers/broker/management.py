"""The management HTTP API of a broker, when there is one that answers.

A private node runs the management plugin; a broker named by ``AMQP_URL`` has one only where
``HELPERS_MANAGEMENT_URL`` says so (nothing is guessed from the AMQP host: a user's API may
listen elsewhere, want other credentials, or not exist, and RabbitMQ 4 deprecates its
metrics in favour of Prometheus). ``answers(broker)`` tells, once per URL and process,
whether it does; callers that can do without it (``helpers.measure.monitor``,
``helpers.broker.dead_letter``) then take their figures over AMQP instead and say so.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from helpers.broker.model import Broker
from helpers.errors import BrokerConnectionError
from helpers.settings import MANAGEMENT_TIMEOUT_S

#: management URL -> (answers, when we asked): an answer is kept, a silence for a minute.
_ANSWERS: dict[str, tuple[bool, float]] = {}
SILENCE_KEPT_S = 60.0


def call(broker: Broker, method: str, path: str, body: dict | None = None,
         timeout: float = MANAGEMENT_TIMEOUT_S):
    """One request to ``/api/<path>``: ``(status, decoded JSON or None)``.

    HTTP errors come back as their status (with the broker's ``reason`` when it gave one);
    a management API that does not answer raises ``BrokerConnectionError``.
    """
    if not broker.management_url:
        raise BrokerConnectionError(
            "This broker has no management API configured: set HELPERS_MANAGEMENT_URL "
            "(e.g. http://localhost:15672) if it has one.")
    user, password = broker.management_auth()
    request = urllib.request.Request(
        broker.management_url.rstrip("/") + "/api/" + path, method=method,
        data=None if body is None else json.dumps(body).encode())
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        try:
            reason = json.load(exc).get("reason")
        except (ValueError, AttributeError, OSError):
            reason = exc.reason
        return exc.code, {"reason": reason}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _ANSWERS[broker.management_url] = (False, time.monotonic())
        raise BrokerConnectionError(
            f"The management API at {broker.management_url} did not answer ({exc}): check "
            "HELPERS_MANAGEMENT_URL, or unset it to take the figures over AMQP.") from exc


def get(broker: Broker, path: str, timeout: float = MANAGEMENT_TIMEOUT_S):
    """GET ``/api/<path>``: its JSON, or None for 404; other refusals in one sentence."""
    status, data = call(broker, "GET", path, timeout=timeout)
    if status == 404:
        return None
    if status >= 300:
        raise BrokerConnectionError(
            f"The management API answered {status} for /api/{path} "
            f"({(data or {}).get('reason')}): is the management user allowed to read it "
            "(tag monitoring or administrator)?")
    return data


def answers(broker: Broker) -> bool:
    """True when ``broker`` has a management API that answers with our credentials."""
    url = broker.management_url
    if not url:
        return False
    known = _ANSWERS.get(url)
    if known and (known[0] or time.monotonic() - known[1] < SILENCE_KEPT_S):
        return known[0]
    try:
        ok = call(broker, "GET", "overview")[0] < 300
    except BrokerConnectionError:
        ok = False
    _ANSWERS[url] = (ok, time.monotonic())
    return ok


def vhost_path(broker: Broker, *names: str) -> str:
    """``<vhost>/<name>...``, each part quoted for a management API path."""
    return "/".join(urllib.parse.quote(part, safe="") for part in (broker.vhost(), *names))
