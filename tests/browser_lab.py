"""A JupyterLab server and a headless Chromium for the browser test (``test_browser.py``).

The server runs on 127.0.0.1 with a token, from a temporary folder that holds copies of the
notebooks and its own config, settings and runtime folders, so nothing of the user's
JupyterLab is read or written. Chromium is the system's binary (``CHROMIUM`` overrides the
search), driven by Playwright, with a new empty profile and the flags that keep it from
calling out to the network. Nothing here installs anything: ``.ci/ensure-chromium`` does.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: Flags for a quiet headless Chromium in a closed network (without the networking ones it
#: keeps retrying Google's services and floods the network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
#: JupyterLab settings for the test's own settings folder: no news, no update checks, and
#: a notebook's own kernel starts without a "Select Kernel" dialog.
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False},
                "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
                {"autoStartDefaultKernel": True}}


def find_chromium() -> str | None:
    """The Chromium binary to drive: ``$CHROMIUM``, else ``chromium`` on the PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """``jupyter lab`` on 127.0.0.1 with a token, serving copies of ``notebooks``."""

    def __init__(self, notebooks: list[Path], workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.root = workdir / "notebooks"
        self.root.mkdir(parents=True)
        for path in notebooks:
            shutil.copy2(path, self.root / path.name)
        for name, values in LAB_SETTINGS.items():
            target = workdir / "settings" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.env = {**os.environ, **env,
                    "JUPYTER_CONFIG_DIR": str(workdir / "config"),
                    "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
                    "JUPYTERLAB_SETTINGS_DIR": str(workdir / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
                    "IPYTHONDIR": str(workdir / "ipython")}
        self.log_path = workdir / "jupyter.log"
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The address that opens ``notebook`` in JupyterLab, logged in with the token."""
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def start(self, timeout: float = 90) -> "Lab":
        """Start the server; return once its API answers."""
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.news_url=None",
               # Kernels talk over Unix sockets in the runtime folder: TCP ports picked at
               # random collided with other programs' connections on a busy machine.
               "--KernelManager.transport=ipc"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited at start: {self.log_tail()}")
            try:
                self.api("GET", "status")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer in {timeout:.0f} s: {self.log_tail()}")

    def api(self, method: str, path: str):
        """Call the server's REST API; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state of the kernel of ``notebook`` (None: it has none yet)."""
        for session in self.api("GET", "sessions") or []:
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def kernel_output(self, notebook: str, code: str, timeout: float = 60) -> str:
        """Run ``code`` in the kernel of ``notebook`` (as a client of its own, beside the
        page's); what it printed."""
        from jupyter_client import BlockingKernelClient

        kernel = next(s["kernel"] for s in self.api("GET", "sessions") or []
                      if s.get("path") == notebook and s.get("kernel"))
        client = BlockingKernelClient()
        client.load_connection_file(str(self.workdir / "runtime" / f"kernel-{kernel['id']}.json"))
        if client.transport == "ipc" and not os.path.isabs(client.ip):
            client.ip = str(self.root / client.ip)  # relative to the server's folder
        client.start_channels()
        printed: list[str] = []
        try:
            reply = client.execute_interactive(
                code, timeout=timeout, store_history=False,
                output_hook=lambda msg: printed.append(msg["content"].get("text", ""))
                if msg["msg_type"] == "stream" else None)
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise AssertionError(f"{notebook}: {reply['content'].get('evalue')}")
        return "".join(printed)

    def shut_down_kernels(self) -> None:
        """End every kernel the server runs (their workers end with them)."""
        for kernel in self.api("GET", "kernels") or []:
            self.api("DELETE", f"kernels/{kernel['id']}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut the kernels down, then the server (by its pid; killed if it lingers)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.shut_down_kernels()
        except OSError:
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def launch_chromium(playwright, executable: str, profile: Path, viewport=(1400, 1000)):
    """A headless Chromium on a new, empty profile; returns its browser context."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": viewport[0], "height": viewport[1]})
