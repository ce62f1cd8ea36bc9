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
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from helpers.broker.model import Broker
from helpers.errors import BrokerControlError

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


def set_env(broker: Broker, values: dict[str, int | None],
            read: tuple[str, ...] = ()) -> dict[str, int | None]:
    """Set (or unset, for None) integer variables of the ``rabbit`` application, in one
    ``rabbitmqctl eval``; return their values before (None: unset), and those of ``read``."""
    listing = ", ".join([*values, *(key for key in read if key not in values)])
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
def node_env(broker: Broker, read: tuple[str, ...] = (), **values: int):
    """Set ``rabbit`` variables for the block (new channels read them); restore them after.

    Yields the values before, of those set and of those named in ``read``.
    """
    old = set_env(broker, values, read)
    try:
        yield old
    finally:
        set_env(broker, {key: old.get(key) for key in values})


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


class DiskAlarm:
    """The node's disk alarm, raised and cleared on cue (``raise_now``, ``clear_now``).

    ``rabbitmqctl`` starts an Erlang VM for each call, which takes one to several seconds on
    a busy machine: too slow to raise an alarm at a chosen moment. So one ``rabbitmqctl
    eval`` is started ahead (``start``) with a small program that waits for a cue file, sets
    the free-disk limit above the free space (what ``rabbitmqctl set_disk_free_limit`` does),
    writes the node's clock reading, waits for the next cue and sets the limit back. Without
    a cue to raise within ``max_s`` it does nothing; without one to clear, it clears anyway.
    ``alarm`` holds ``raised_t``, ``cleared_t`` (wall-clock seconds), ``free_bytes`` and
    ``limit_bytes`` (before).
    """

    def __init__(self, broker: Broker, max_s: float = 120.0):
        require(broker, "A disk alarm")
        self.broker, self.max_s = broker, max_s
        self.cues = Path(tempfile.mkdtemp(prefix="alarm-", dir=broker.state_dir))
        self.alarm: dict = {}
        self._thread: threading.Thread | None = None
        self._out: dict = {}

    def _program(self) -> str:
        cue = lambda name: json.dumps(str(self.cues / name))  # noqa: E731 (an Erlang string)
        return (
            "Wait = fun W(F, N) -> case filelib:is_file(F) of true -> ok; "
            "false when N =< 0 -> timeout; false -> timer:sleep(10), W(F, N - 10) end end, "
            f"Max = {int(self.max_s * 1000)}, file:write_file({cue('waiting')}, <<\"1\">>), "
            f"case Wait({cue('raise')}, Max) of timeout -> timeout; ok -> "
            "Free = rabbit_disk_monitor:get_disk_free(), "
            "Old = rabbit_disk_monitor:get_disk_free_limit(), "
            "rabbit_disk_monitor:set_disk_free_limit(Free * 10 + 1000000000), "
            "T1 = os:system_time(millisecond), "
            f"file:write_file({cue('raised')}, integer_to_list(T1)), "
            f"Wait({cue('clear')}, Max), "
            "rabbit_disk_monitor:set_disk_free_limit(Old), "
            "{T1, os:system_time(millisecond), Free, Old} end.")

    def start(self) -> "DiskAlarm":
        """Start the waiting program (returns at once)."""
        def run() -> None:
            try:
                self._out["text"] = ctl(self.broker, "eval", self._program(),
                                        timeout=2 * self.max_s + 60)
            except BrokerControlError as exc:
                self._out["error"] = exc
        self._thread = threading.Thread(target=run, name="disk-alarm", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the program runs on the node, waiting for its cue."""
        deadline = time.monotonic() + timeout
        while not (self.cues / "waiting").exists():
            if "error" in self._out or time.monotonic() > deadline:
                raise self._out.get("error") or BrokerControlError(
                    f"rabbitmqctl eval did not start within {timeout:.0f} s: see "
                    "`python -m helpers broker status`.")
            time.sleep(0.01)

    def raise_now(self, timeout: float = 60.0) -> float:
        """Give the cue; return once the alarm is on, with the node's time of raising it."""
        (self.cues / "raise").touch()
        raised = self.cues / "raised"
        deadline = time.monotonic() + timeout
        while not raised.exists() or not raised.read_text():
            if "error" in self._out or time.monotonic() > deadline:
                raise self._out.get("error") or BrokerControlError(
                    f"The disk alarm was not raised within {timeout:.0f} s: see "
                    "`python -m helpers broker status`.")
            time.sleep(0.01)
        self.alarm["raised_t"] = int(raised.read_text()) / 1000
        return self.alarm["raised_t"]

    def clear_now(self) -> None:
        """Give the cue to clear it; wait until the limit is set back."""
        (self.cues / "clear").touch()
        (self.cues / "raise").touch()  # never raised: the program clears at once
        if self._thread is not None:
            self._thread.join()
        shutil.rmtree(self.cues, ignore_errors=True)
        if "error" in self._out:
            raise self._out["error"]
        raised, cleared, free, limit = _numbers(self._out["text"], 4)
        self.alarm.update(raised_t=raised / 1000, cleared_t=cleared / 1000, free_bytes=free,
                          limit_bytes=limit)
