"""``python -m helpers.broker.install`` and the make targets that call it before anything else.

The real install (apt-get in a fresh Debian 12) is shown in a debootstrap chroot, not here:
this machine's rabbitmq-server serves other checkouts. Here a stand-in ``apt-get`` records
what the real one would have met: the policy that keeps the system service from starting.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.broker import resolve as broker_mod
from helpers.broker.model import NO_BROKER_HELP
from helpers.broker import install
from helpers.procs import port_open

ROOT = Path(__file__).resolve().parent.parent


def _no_broker(monkeypatch):
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setattr(broker_mod, "find_rabbitmq_server", lambda: None)
    monkeypatch.setattr(broker_mod, "port_open", lambda host, port: False)


def _machine(monkeypatch, tmp_path, system="Linux", euid=0, tools=("apt-get",)):
    """Pretend to be a machine with ``tools`` on PATH (nothing else), as user ``euid``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")  # sudo -n: a password is needed
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(install.platform, "system", lambda: system)
    monkeypatch.setattr(install.os, "geteuid", lambda: euid)


@pytest.mark.parametrize("system, euid, tools, expected", [
    ("Linux", 0, ("apt-get",), ["apt-get", "install", "-y"]),
    ("Linux", 0, ("dnf",), ["dnf", "install", "-y"]),
    ("Linux", 1000, ("apt-get", "sudo"), None),  # sudo wants a password: ask nobody
    ("Linux", 1000, ("apt-get",), None),
    ("Linux", 0, (), None),
    ("Darwin", 501, ("brew",), ["brew", "install", "rabbitmq"]),
    ("Darwin", 501, (), None),
])
def test_installs_only_where_nobody_is_asked(monkeypatch, tmp_path, system, euid, tools, expected):
    _machine(monkeypatch, tmp_path, system, euid, tools)
    how = install.plan()
    if expected is None:
        assert how is None
    else:
        assert how.commands()[-1][:len(expected)] == expected
        assert how.commands()[-1][-1] in ("rabbitmq-server", "rabbitmq")


def test_passwordless_sudo_prefixes_every_command(monkeypatch, tmp_path):
    _machine(monkeypatch, tmp_path, euid=1000, tools=("apt-get",))
    sudo = tmp_path / "bin" / "sudo"
    sudo.write_text("#!/bin/sh\nexit 0\n")
    sudo.chmod(0o755)
    how = install.plan()
    assert how.sudo == ["sudo", "-n"]
    assert all(cmd[:2] == ["sudo", "-n"] for cmd in how.commands())
    assert "sudo -n" in how.describe()


def test_no_way_to_a_broker_is_one_sentence_within_seconds(monkeypatch, tmp_path, capsys):
    _no_broker(monkeypatch)
    _machine(monkeypatch, tmp_path, euid=1000, tools=("apt-get", "sudo"))
    started = time.monotonic()
    status = install.ensure()
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == NO_BROKER_HELP
    assert took < 5, f"took {took:.1f} s to say there is no broker"


def test_a_resolvable_broker_installs_nothing(monkeypatch, capsys):
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker.invalid:5672/%2F")
    monkeypatch.setattr(install, "plan", lambda: pytest.fail("looked for an installer"))
    assert install.ensure() == 0
    assert capsys.readouterr() == ("", "")


def _fake_apt(tmp_path, policy: Path, exit_code: int = 0) -> Path:
    """An apt-get that records, at install time, what starting a service would be told."""
    record = tmp_path / "seen"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    apt = bin_dir / "apt-get"
    apt.write_text(f"""#!/bin/sh
echo "$@ DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {record}
if [ "$1" = install ]; then "{policy}" rabbitmq-server start; echo "policy $?" >> {record}; fi
echo "apt-get says hello"
exit {exit_code}
""")
    apt.chmod(0o755)
    return record


@pytest.mark.parametrize("before", [None, "#!/bin/sh\n# the image's own\nexit 0\n"],
                         ids=["no-policy-before", "own-policy-before"])
def test_apt_install_keeps_the_service_stopped_then_restores_the_policy(
        monkeypatch, tmp_path, capsys, before):
    policy = tmp_path / "policy-rc.d"
    if before is not None:
        policy.write_text(before)
        policy.chmod(0o755)
    record = _fake_apt(tmp_path, policy)
    _no_broker(monkeypatch)
    monkeypatch.setattr(install, "POLICY_RC_D", policy)
    monkeypatch.setattr(install, "LOG_FILE", tmp_path / "install.log")
    monkeypatch.setattr(install, "plan", lambda: install.Plan("apt-get"))
    monkeypatch.setattr(install, "find_rabbitmq_server", lambda: Path("/somewhere/rabbitmq-server"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    assert install.ensure() == 0
    seen = record.read_text().splitlines()
    assert seen[0].startswith("update") and seen[1].startswith("install -y")
    assert "rabbitmq-server DEBIAN_FRONTEND=noninteractive" in seen[1]
    assert seen[2] == "policy 101", "a service start during the install was not denied"
    assert (policy.read_text() if policy.exists() else None) == before
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("No RabbitMQ broker found: installing rabbitmq-server with apt-get")
    assert err[-1].startswith("installed /somewhere/rabbitmq-server in ")
    assert "apt-get says hello" in (tmp_path / "install.log").read_text()


def test_a_failed_install_says_so_and_still_restores_the_policy(monkeypatch, tmp_path, capsys):
    policy = tmp_path / "policy-rc.d"
    _fake_apt(tmp_path, policy, exit_code=100)
    _no_broker(monkeypatch)
    monkeypatch.setattr(install, "POLICY_RC_D", policy)
    monkeypatch.setattr(install, "LOG_FILE", tmp_path / "install.log")
    monkeypatch.setattr(install, "plan", lambda: install.Plan("apt-get"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    assert install.ensure() == 2
    assert not policy.exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("Installing rabbitmq-server failed: `apt-get update -q` failed (exit 100)")
    assert "apt-get says hello" in last and NO_BROKER_HELP in last


def test_runs_with_the_standard_library_alone():
    """make runs it with the system's Python, before the virtual environment exists."""
    proc = subprocess.run([sys.executable, "-S", "-m", "helpers.broker.install", "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0 or proc.stderr.strip() == NO_BROKER_HELP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening_on(port: int) -> list[str]:
    """The addresses with a socket listening on ``port`` (from /proc, no tool needed)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, _remote, state = line.split()[1:4]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.append(socket.inet_ntop(
                        socket.AF_INET if len(address) == 8 else socket.AF_INET6,
                        bytes.fromhex(address)[::-1] if len(address) == 8
                        else b"".join(bytes.fromhex(address[i:i + 8])[::-1]
                                      for i in range(0, 32, 8))))
    return found


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.tooling
def test_make_lab_serves_on_loopback(broker, monkeypatch):
    """`make lab` starts JupyterLab on 127.0.0.1, also as root (which needs --allow-root)."""
    if broker.kind == "private":
        monkeypatch.setenv("HELPERS_STATE_DIR", str(broker.state_dir))
    else:
        monkeypatch.setenv("AMQP_URL", broker.url)
    port = _free_port()
    lab = subprocess.Popen(["make", "--no-print-directory", "lab",
                            f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not port_open("127.0.0.1", port):
            assert lab.poll() is None, f"make lab ended: {lab.stdout.read()[-600:]}"
            assert time.monotonic() < deadline, "JupyterLab did not listen within 90 s"
            time.sleep(0.3)
        assert _listening_on(port) == ["127.0.0.1"]
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
