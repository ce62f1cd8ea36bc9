"""Telling a live process from one that has gone (no broker needed)."""
import os
import subprocess
import sys
import textwrap

from helpers import procs

#: A parent that forks a child which exits at once (a zombie that is not the test's to
#: reap), prints its pid, and reaps it when told: as the fork server reaps its workers.
PARENT = textwrap.dedent("""
    import os, sys
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    print(pid, flush=True)
    sys.stdin.readline()
    os.waitpid(pid, 0)
    print("reaped", flush=True)
    sys.stdin.readline()
""")


def test_a_zombie_reaped_by_its_parent_while_pid_alive_looks_is_gone(monkeypatch):
    """Why the fork-server pool test found a worker "alive" after its pool had ended (4 in
    300 repeats under CPU load): kill(0) answered for the zombie, the server reaped it, and
    the /proc read that followed failed, which pid_alive took for a running process. Here
    the parent reaps it at exactly that point."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        zombie = int(parent.stdout.readline())
        # Once it has exited it is a zombie: gone, though kill(0) still answers for it.
        assert procs.wait_until(lambda: not procs.pid_alive(zombie), 5)
        assert procs.pid_alive(zombie) is False
        real_kill, reaped = os.kill, []

        def kill_then_reap(pid, sig):
            real_kill(pid, sig)  # answers: the zombie is still there
            if pid == zombie and not reaped:
                parent.stdin.write("\n")
                parent.stdin.flush()
                reaped.append(parent.stdout.readline())

        monkeypatch.setattr(os, "kill", kill_then_reap)
        assert procs.pid_alive(zombie) is False
        assert reaped == ["reaped\n"]  # the race happened, between kill(0) and /proc
    finally:
        monkeypatch.undo()
        parent.stdin.close()
        parent.wait(5)


def test_a_running_process_is_alive_and_an_ended_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    assert procs.pid_alive(child.pid)
    child.stdin.close()
    child.wait(5)
    assert not procs.pid_alive(child.pid)
    assert procs.pid_alive(os.getpid())
