"""A regular (non-editable) install works on its own: the package data (web page, split) comes
with it, ``styler --help`` and ``styler fast`` run, and the server serves the page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx2
import pytest
from conftest import REPO, api_spawn, api_stop


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """styler built from a copy of the working tree and installed with pip into a target folder."""
    root = tmp_path_factory.mktemp("install")
    src, target = root / "src", root / "site"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "styler", src / "styler", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(src)], check=True, timeout=600)
    shutil.rmtree(src)  # nothing may still point into the source tree
    env = {**os.environ, "PYTHONPATH": str(target)}
    return {"target": target, "env": env, "cwd": root}


def run(installed: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], check=False, env=installed["env"], cwd=installed["cwd"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_installed_package_is_used_and_has_its_data(installed):
    code = "import styler, importlib.resources as r; print(styler.__file__); " \
           "print(all((r.files('styler') / p).is_file() for p in ('web/index.html', " \
           "'web/app.js', 'web/common.js', 'web/inputs.js', 'split.json')))"  # fmt: skip
    proc = run(installed, "-c", code)
    path, data = proc.stdout.split()
    assert path.startswith(str(installed["target"])) and data == "True", proc.stderr


def test_help_and_fast(installed, api_model_path, api_images, tmp_path):
    proc = run(installed, "-m", "styler.cli", "--help")
    assert proc.returncode == 0 and "fast" in proc.stdout
    (tmp_path / "c.png").write_bytes(api_images["content"])
    (tmp_path / "s.jpg").write_bytes(api_images["style"])
    args = [str(tmp_path / "c.png"), str(tmp_path / "s.jpg"), "-o", str(tmp_path / "o.png")]
    proc = run(installed, "-m", "styler.cli", "fast", *args, "--size", "32",
               "--weights", str(api_model_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.png").is_file()


def test_serves_the_page(installed, api_model_path, tmp_path):
    env = {"PYTHONPATH": str(installed["target"])}
    proc, url = api_spawn(api_model_path, tmp_path, cwd=installed["cwd"], **env)
    try:
        page = httpx2.get(url, timeout=30)
        assert page.status_code == 200 and 'id="stylize-btn"' in page.text
        assert httpx2.get(f"{url}/app.js", timeout=30).status_code == 200
    finally:
        api_stop(proc)
