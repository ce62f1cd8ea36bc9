"""pyproject.toml and environment.yml list the same dependencies (conda can't be reached here)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")
yaml = pytest.importorskip("yaml")


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str))
    wanted = dict(_split(d) for d in project["dependencies"])
    assert {k: conda.get(k) for k in wanted} == wanted
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e .") for line in pip_part), "the project itself, editable"
    assert "rabbitmq-server" in conda, "conda users get a broker from the environment"
    py = _split(project["requires-python"].join(["python", ""]))[1]
    assert conda["python"] == py


def test_compose_publishes_on_loopback_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["rabbitmq"]
    assert service["hostname"] and service["healthcheck"]
    assert "management" in service["image"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
