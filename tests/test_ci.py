"""CI's own pieces: the Debian mirror comes from the machine's apt sources, never a file here."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Package registries' hosts: the project's files name none (the machine's settings do).
REGISTRY_HOSTS = re.compile(
    r"(deb|ftp|security|snapshot|archive)\.(debian|ubuntu)\.(org|com)|pypi\.org"
    r"|pythonhosted\.org|registry\.npmjs\.org|anaconda\.(org|com)|conda\.anaconda")


def _mirror(apt_etc: Path, suite: str = "trixie") -> str:
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "chroot"), suite, "--mirror"],
                          env={"APT_ETC": str(apt_etc), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _apt(tmp_path: Path, sources_list: str = "", **parts: str) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True, exist_ok=True)
    if sources_list:
        (tmp_path / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


DEB822 = """Types: deb
URIs: http://security.mirror.test/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
Enabled: no
URIs: http://off.mirror.test/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://main.mirror.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
"""


@pytest.mark.parametrize("sources_list, parts, expected", [
    ("", {"debian_sources": DEB822}, "http://main.mirror.test/debian"),
    ("# deb http://old.mirror.test/debian bookworm main\n"
     "deb-src http://src.mirror.test/debian bookworm main\n"
     "deb [arch=amd64 signed-by=/k.gpg] http://list.mirror.test/debian bookworm main contrib\n",
     {"debian_sources": DEB822}, "http://list.mirror.test/debian"),
    ("", {"a_sources": "Types: deb\nURIs: http://first.mirror.test/d\nSuites: trixie\n"
                       "Components: main", "b_sources": DEB822}, "http://first.mirror.test/d"),
    ("", {"x_list": "deb http://only-updates.mirror.test/d bookworm-updates main\n"}, ""),
    ("", {"debian_sources_disabled": DEB822}, ""),
], ids=["deb822", "one-line-first", "no-blank-line-at-the-end", "updates-only", "not-a-sources-file"])
def test_the_mirror_is_the_machines_own(tmp_path, sources_list, parts, expected):
    assert _mirror(_apt(tmp_path, sources_list, **parts)) == expected


@pytest.mark.parametrize("suite", ["trixie", "sid"])
def test_one_chroot_script_takes_each_suite(tmp_path, suite):
    apt = _apt(tmp_path, "deb http://list.mirror.test/debian bookworm main\n")
    assert _mirror(apt, suite) == "http://list.mirror.test/debian"


@pytest.mark.parametrize("args", [[], ["bookworm", "--mirror"], ["--mirror"]])
def test_the_chroot_script_refuses_a_suite_it_does_not_know(args):
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "chroot"), *args],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=20)
    assert proc.returncode == 2 and "usage: .ci/chroot trixie|sid" in proc.stderr


def test_ci_runs_3_10_then_each_chroot_and_says_one_line_per_version():
    run = (ROOT / ".ci" / "run").read_text()
    assert 'CHROOTS="trixie:4.0 sid:4.3"' in run
    assert run.index("run_310;") < run.index('run_chroot "$suite"')
    assert "bash .ci/chroot \"$suite\" --prepare" in run and "debian13" not in run
    proc = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr


def test_no_file_of_the_project_names_a_package_registry():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    named = []
    for name in files.stdout.split():
        path = ROOT / name
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if REGISTRY_HOSTS.search(line):
                named.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not named, "a package registry's host in the project's files:\n" + "\n".join(named)
