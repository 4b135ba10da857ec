"""The wheel: it builds without a warning, installs into a fresh venv and serves.

The build runs on a copy of the sources (no ``build/`` left in the checkout). The
fresh venv gets only the wheel; its dependencies come from the test interpreter's
site-packages through a ``.pth`` line, so the test needs no network and no index.
A ``.pth`` line adds a directory without running the ``.pth`` files inside it, so
the checkout's editable install stays out of the fresh venv: ``opstatus`` there is
the wheel's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.server import clean_env, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
#: what setuptools and pip print when the project's metadata is out of date
WARNINGS = ("warning:", "deprecat")
#: distutils' notes of a build without byte-compiling (PYTHONDONTWRITEBYTECODE): not ours
HARMLESS = ("byte-compiling is disabled",)


def _build(tmp_path: Path) -> tuple[Path, str]:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "opstatus", source / "opstatus", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "-w", str(out),
         str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = out.glob("opstatus-*.whl")
    return wheel, built.stdout + built.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from this checkout, and everything the build printed."""
    return _build(tmp_path_factory.mktemp("wheel"))


def test_the_build_prints_no_warning(wheel: tuple[Path, str]) -> None:
    _, output = wheel
    noisy = [
        line
        for line in output.splitlines()
        if any(w in line.lower() for w in WARNINGS) and not any(h in line for h in HARMLESS)
    ]
    assert noisy == [], "\n".join(noisy)


def test_the_wheel_installs_into_a_fresh_venv_and_serves(
    wheel: tuple[Path, str], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    # the dependencies, from the interpreter running the tests (after the venv's own)
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--no-deps", str(wheel[0])],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = subprocess.run(
        [str(python), "-c", "import opstatus; print(opstatus.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's
    _serves(venv / "bin" / "opstatus", tmp_path)


def _serves(script: Path, workdir: Path) -> None:
    """Start the wheel's ``opstatus serve`` and read what needs its package data."""
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--database", f"sqlite:///{workdir / 'wheel.db'}"],
            cwd=workdir, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)  # after the lifespan: migrations ran
        with httpx.Client(base_url=url, timeout=5) as http:
            # the migrations (SQL files) ran; the dashboard's static files are there
            assert http.get("/ui/").status_code == 200
            assert http.get("/openapi.json").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
