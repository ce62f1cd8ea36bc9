"""What several test modules share (the fixtures are in conftest.py): import from here.

``IN_CI`` (a broker test fails instead of skipping), ``eventually`` (poll a condition, never
a fixed sleep), ``kernel_environment`` (what a notebook kernel needs to find the session's
broker), ``PHASES`` (each test's phase outcomes, kept on its item by conftest).
"""
from __future__ import annotations

import os

import pytest

from helpers.procs import wait_until

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
def kernel_environment(found) -> dict[str, str]:
    """What a notebook kernel needs to find the session's broker: the private node's state
    folder, or an external broker's URL (its management URL, if any, is inherited)."""
    if found.kind == "private":
        return {"HELPERS_STATE_DIR": str(found.state_dir)}
    if found.kind == "external":
        return {"AMQP_URL": found.url}
    return {}


def eventually(condition, timeout: float = 30.0, what: str | None = None,
               interval: float = 0.05):
    """Poll ``condition`` until it returns something true, and return that; fail the test
    after ``timeout`` seconds, saying ``what`` it waited for."""
    value = wait_until(condition, timeout, interval)
    if not value:
        pytest.fail(f"not true within {timeout:g} s: {what or condition.__doc__ or condition}")
    return value


#: Each test's outcome per phase (``{"setup": "passed", "call": "failed", ...}``), kept on
#: its item by conftest as it runs, for a test that decides by another's
#: (``test_notebooks.py`` by the browser test's).
PHASES = pytest.StashKey[dict]()


def skip_without_frameworks(stem: str) -> None:
    """Notebook 09 runs Celery and Dramatiq: without them it skips locally, fails under CI."""
    from helpers import frameworks

    absent = [n for n in ("celery", "dramatiq") if not frameworks.available(n)]
    if stem == "09_frameworks" and absent:
        message = f"{stem} needs {' and '.join(absent)}: {frameworks.INSTALL_HINT}"
        pytest.fail(message) if IN_CI else pytest.skip(message)
