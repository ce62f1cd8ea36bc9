"""Progress bars (``helpers.cli.progress``): on a terminal's stderr only, never when piped."""
import io
import os
import pty
import subprocess
import sys
import time

import pytest

from helpers.cli.progress import Bar


def _read_all(fd: int) -> str:
    """Everything written to a pty's other end until it closes (EIO once it is closed)."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def test_a_bar_on_a_terminal_shows_done_of_total_and_rate():
    master, slave = pty.openpty()
    with os.fdopen(slave, "w", closefd=True) as terminal:
        with Bar("tasks", total=10, stream=terminal, delay_s=0) as progress:
            assert progress.shown
            for done in range(1, 11):
                progress(done, 10)
                time.sleep(0.02)
    seen = _read_all(master)
    os.close(master)
    assert "10/10" in seen and "tasks/s" in seen, seen


def test_no_bar_when_not_a_terminal():
    stream = io.StringIO()
    with Bar("tasks", total=10, stream=stream, delay_s=0) as progress:
        assert not progress.shown
        progress(5, 10)
    assert stream.getvalue() == ""


def _cli_args(tasks: int = 300) -> list[str]:
    # 300 tasks of 0.02 s on 2 workers: 3 s of work, more than the bar's 2 s delay
    return [sys.executable, "-m", "helpers", "run", "--workers", "2", "--prefetch", "10",
            "--tasks", str(tasks), "--heavy", "0.02", "--light", "0.02"]


@pytest.mark.broker
@pytest.mark.tooling
def test_run_draws_a_bar_on_a_terminal_and_none_when_piped(broker):
    env = dict(os.environ, AMQP_URL=broker.url)
    master, slave = pty.openpty()
    proc = subprocess.Popen(_cli_args(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=env)
    os.close(slave)
    terminal = _read_all(master)
    os.close(master)
    stdout = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, terminal
    assert "300/300" in terminal and "tasks/s" in terminal, terminal
    assert "300/300" not in stdout, "the bar belongs on stderr"

    piped = subprocess.run(_cli_args(), capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "tasks/s" not in piped.stderr and "\r" not in piped.stderr, piped.stderr
    assert piped.stderr.splitlines() == ["2 workers, prefetch 10, 300 tasks ..."]
