"""Security: the private node listens on loopback only, and no password is ever printed.

(docker-compose.yml publishing on 127.0.0.1 only is checked in test_packaging.py.)
"""
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers.broker import management
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers import settings
from helpers.core import tasks
from helpers.core.connection import mask_url
from helpers.pool.pool import WorkerPool
from helpers.procs import free_port

SECRET = "pw-Zq8-s3cret"


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_loopback


def _listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if size == 16:  # four little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
            else:
                raw = raw[::-1]
            found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


@pytest.mark.broker
def test_the_private_node_listens_on_loopback_only(broker):
    if broker.kind != "private":
        pytest.skip("only the private node's listeners are ours to choose")
    listeners = management.get(broker, "overview")["listeners"]
    protocols = {item["protocol"] for item in listeners}
    assert {"amqp", "http", "clustering"} <= protocols, protocols
    for item in listeners:
        # The HTTP listener reports "::" as its address; the interface it binds is in its
        # socket options.
        address = (item.get("socket_opts") or {}).get("ip") or item["ip_address"]
        assert _loopback(address), f"{item['protocol']} listens on {address}:{item['port']}"
    if not Path("/proc/net/tcp").exists():
        return
    # The operating system's view: every listening socket of the node's VM and of its epmd.
    state = json.loads(broker.state_file.read_text())
    for pid in (state["node_pid"], state["epmd_pid"]):
        sockets = _listening_sockets(pid)
        assert sockets, f"pid {pid} holds no listening socket?"
        assert all(_loopback(address) for address, _ in sockets), sockets
    assert (("127.0.0.1", state["amqp_port"]) in _listening_sockets(state["node_pid"]))


@pytest.mark.parametrize("url", [
    f"amqp://bob:{SECRET}@host:5672/%2F", f"amqps://bob:{SECRET}@host/vh",
    f"amqp://:{SECRET}@host", f"amqp://bob:{SECRET}@[::1]:5672/",
    "amqp://bob:p%40ss%3Aword@host/",
])
def test_mask_url_hides_every_form_of_password(url):
    masked = mask_url(url)
    assert "***" in masked
    assert SECRET not in masked and "p%40ss" not in masked
    assert masked == url.replace(SECRET, "***").replace("p%40ss%3Aword", "***")


def test_the_cli_never_prints_a_password(cli, one_sentence):
    """Broker down, with a URL carrying a password: every command answers, none shows it."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/%2F"
    env = {"AMQP_URL": url}
    for args in (["run", "--workers", "1", "--prefetch", "1", "--tasks", "2"],
                 ["new-task", "Hello."],
                 ["fault", "crash", "--tasks", "5"]):
        proc = cli(*args, env=env)
        one_sentence(proc, "amqp://guest:***@127.0.0.1:")
        assert SECRET not in proc.stdout + proc.stderr
    status = cli("broker", "status", env=env)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False
    assert SECRET not in status.stdout + status.stderr and "***" in status.stdout


def test_a_worker_waiting_for_its_broker_logs_no_password():
    """A foreground worker retries a broker that is down; its event log stays clean."""
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/%2F"
    proc = subprocess.Popen([sys.executable, "-m", "helpers", "worker", "--queue", "q",
                             "--events"],
                            env=dict(os.environ, AMQP_URL=url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, proc.kill)  # never hang the suite on a silent worker
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:  # wait for the events, not for a fixed time
            lines.append(line)
            if sum('"disconnected"' in seen for seen in lines) >= 2:
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    out = "".join(lines) + out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("disconnected") >= 2  # it kept trying
    assert SECRET not in out + err


@pytest.mark.broker
def test_pools_runs_and_reprs_never_show_the_password(broker, queue, tmp_path, monkeypatch):
    password = broker.management_auth()[1]
    with WorkerPool(broker.url, queue) as pool:
        handles = pool.start(2)
        for handle in handles:
            assert broker.url not in repr(handle)
            if Path("/proc").is_dir():
                # Any local user can read a command line (`ps`): no URL on it at all.
                cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
                assert b"amqp://" not in cmdline and b"amqps://" not in cmdline
        # The pool names its broker, masked: the URL's password never shows.
        assert mask_url(broker.url) in repr(pool) and "alive=2" in repr(pool)
        assert f":{password}@" not in repr(pool) + repr(pool.workers)
    # A recorded run holds figures, never the URL.
    monkeypatch.setattr(settings, "RUNS_DIR", tmp_path)
    result = runner.run(Experiment(1, tasks.equal(2, 0), WorkerConfig(prefetch=1)), broker=broker)
    for path in result.folder.iterdir():
        assert "amqp://" not in path.read_text()
    assert "amqp://" not in repr(result.publish)
    assert f":{password}@" not in repr(broker) + broker.describe() + json.dumps(broker.status())
