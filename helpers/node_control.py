"""Change a running private node's settings: application variables, policies, a disk alarm.

Some lessons need the broker set up otherwise than its defaults, for a few seconds: a
consumer timeout of 1 s instead of 30 minutes (checked 4 times a second, not once a minute),
a policy on one queue, a disk alarm. Node variables and alarms go through ``rabbitmqctl``
against the private node (``PrivateBroker.rabbitmqctl``), policies through the management
HTTP API (what ``rabbitmqctl set_policy`` does, without starting an Erlang VM per call),
exactly as an operator would, and every change is undone by the context manager that made
it. A broker named by ``AMQP_URL`` is not ours to reconfigure: ``require`` refuses it.
"""
from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import urllib.error
import urllib.parse
import urllib.request

from .broker import Broker
from .errors import BrokerControlError

_ENV_VALUE = re.compile(r"\{(\w+),(?:\{ok,(-?\d+)\}|undefined)\}")


def can_control(broker: Broker) -> bool:
    """True when this process can run ``rabbitmqctl`` against ``broker`` (a private node)."""
    return hasattr(broker, "rabbitmqctl")


def require(broker: Broker, what: str) -> None:
    """Refuse, in one sentence, a broker whose node settings we cannot change."""
    if not can_control(broker):
        raise BrokerControlError(
            f"{what} changes the broker's node settings with rabbitmqctl, which only works on "
            "the private node here: unset AMQP_URL to use one.")


def ctl(broker: Broker, *args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl ARGS`` on the private node; its output, or one sentence on failure."""
    require(broker, f"`rabbitmqctl {args[0]}`")
    proc = broker.rabbitmqctl(*args, timeout=timeout)
    if proc.returncode != 0:
        said = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise BrokerControlError(f"`rabbitmqctl {args[0]}` failed ({said}): see "
                                 "`python -m helpers broker status`.")
    return proc.stdout.strip()


def set_env(broker: Broker, values: dict[str, int | None]) -> dict[str, int | None]:
    """Set (or unset, for None) integer variables of the ``rabbit`` application, in one
    ``rabbitmqctl eval``; return their values before (None: unset)."""
    listing = ", ".join(values)
    calls = [f"application:unset_env(rabbit, {key})" if value is None else
             f"application:set_env(rabbit, {key}, {int(value)})" for key, value in values.items()]
    out = ctl(broker, "eval", f"Old = [{{K, application:get_env(rabbit, K)}} || K <- "
                              f"[{listing}]], {', '.join(calls)}, Old.")
    return {m.group(1): (int(m.group(2)) if m.group(2) else None)
            for m in _ENV_VALUE.finditer(out.replace(" ", "").replace("\n", ""))}


def get_env(broker: Broker, *keys: str) -> dict[str, int | None]:
    """The ``rabbit`` application's integer variables ``keys`` (None when unset)."""
    return _get_env(broker, keys)


def _get_env(broker: Broker, keys) -> dict[str, int | None]:
    listing = ", ".join(keys)
    out = ctl(broker, "eval", f"[{{K, application:get_env(rabbit, K)}} || K <- [{listing}]].")
    return {m.group(1): (int(m.group(2)) if m.group(2) else None)
            for m in _ENV_VALUE.finditer(out.replace(" ", "").replace("\n", ""))}


@contextlib.contextmanager
def node_env(broker: Broker, **values: int):
    """Set ``rabbit`` variables for the block (new channels read them); restore them after."""
    old = set_env(broker, values)
    try:
        yield old
    finally:
        set_env(broker, old)


def _management(broker: Broker, method: str, path: str, body: dict | None = None):
    """One management API call: ``(status, reason)``; the reason is the broker's own words."""
    user, password = broker.management_auth()
    request = urllib.request.Request(
        broker.management_url.rstrip("/") + "/api/" + path, method=method,
        data=None if body is None else json.dumps(body).encode())
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"{user}:{password}".encode()).decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc).get("reason")
        except ValueError:
            return exc.code, exc.reason
    except (urllib.error.URLError, OSError) as exc:
        raise BrokerControlError(f"The management API at {broker.management_url} did not "
                                 f"answer ({exc}): is the management plugin enabled?") from exc


def _policy_path(broker: Broker, name: str) -> str:
    quote = lambda text: urllib.parse.quote(text, safe="")  # noqa: E731
    return f"policies/{quote(broker.vhost())}/{quote(name)}"


def set_policy(broker: Broker, name: str, pattern: str, definition: dict,
               apply_to: str = "queues", priority: int = 100) -> str | None:
    """Set a policy; None when the broker took it, else its refusal in its own words.

    The same as ``rabbitmqctl set_policy NAME PATTERN DEFINITION --apply-to ... --priority
    ...``; a definition key the broker does not know is refused (that is how to tell).
    """
    require(broker, f"The policy {name}")
    status, reason = _management(broker, "PUT", _policy_path(broker, name), {
        "pattern": pattern, "definition": definition, "apply-to": apply_to,
        "priority": priority})
    if status < 300:
        return None
    return " ".join(html.unescape(str(reason or status)).split())


def clear_policy(broker: Broker, name: str) -> None:
    """Remove a policy (no error when it does not exist)."""
    if can_control(broker):
        _management(broker, "DELETE", _policy_path(broker, name))


@contextlib.contextmanager
def policy(broker: Broker, name: str, pattern: str, definition: dict, **options):
    """A policy for the block: yields None when the broker took it, else its refusal."""
    refused = set_policy(broker, name, pattern, definition, **options)
    try:
        yield refused
    finally:
        if refused is None:
            clear_policy(broker, name)


def _numbers(out: str, count: int) -> list[int]:
    numbers = [int(n) for n in re.findall(r"\d+", out)]
    if len(numbers) != count:
        raise BrokerControlError(f"rabbitmqctl eval answered {out!r}: see `python -m helpers "
                                 "broker status`.")
    return numbers


@contextlib.contextmanager
def disk_alarm(broker: Broker):
    """Raise the node's disk alarm for the block; clear it after.

    The free-disk limit is set above the free space, then back to what it was (what
    ``rabbitmqctl set_disk_free_limit`` does), each in one ``rabbitmqctl eval`` that reads the
    node's clock as it acts. Yields a dict: ``raised_t`` (wall-clock seconds), ``free_bytes``,
    ``limit_bytes`` (the limit before); ``cleared_t`` is added once it is cleared.
    """
    require(broker, "A disk alarm")
    raised, free, limit = _numbers(ctl(broker, "eval", (
        "Free = rabbit_disk_monitor:get_disk_free(), "
        "Old = rabbit_disk_monitor:get_disk_free_limit(), "
        "rabbit_disk_monitor:set_disk_free_limit(Free * 10 + 1000000000), "
        "{os:system_time(millisecond), Free, Old}.")), 3)
    alarm = {"raised_t": raised / 1000, "free_bytes": free, "limit_bytes": limit}
    try:
        yield alarm
    finally:
        (cleared,) = _numbers(ctl(broker, "eval", (
            f"rabbit_disk_monitor:set_disk_free_limit({limit}), "
            "os:system_time(millisecond).")), 1)
        alarm["cleared_t"] = cleared / 1000
