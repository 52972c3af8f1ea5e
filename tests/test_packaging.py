"""kstress installs as a wheel that runs from any directory: every module and
every data folder (configs, Kconfig fragments, workloads, image recipes) is in
it, and an installed kstress finds them through the package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.kernel import DEFAULT_SOURCE

REPO = Path(__file__).resolve().parents[1]
# Repository folder -> where the wheel carries it (pyproject.toml's package-dir).
DATA = {"configs": "harness/data/configs", "kernel-configs": "harness/data/kernel_configs",
        "workloads": "harness/data/workloads", "images": "harness/data/images", "zoo": "harness/data/zoo",
        "examples": "harness/data/examples"}


def tracked(folder: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", folder], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"needs a git checkout of the repository to list its files ({out.stderr.strip()})")
    return out.stdout.split()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("kstress-*.whl")
    return whl


def test_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = [p for p in tracked("harness") if p.endswith((".py", ".json"))]
    assert modules and not [m for m in modules if m not in names]
    for folder, packaged in DATA.items():
        files = tracked(folder)
        assert files, folder
        missing = [f for f in files if packaged + f[len(folder):] not in names]
        assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


@pytest.mark.e2e
@pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                    reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
def test_installed_wheel_runs_the_shipped_quick_config_from_elsewhere(wheel, kernel_cache, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    res = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KSTRESS_CACHE"] = str(kernel_cache)  # the session's kernels: the e2e runs built this one
    kstress = str(venv / "bin" / "kstress")

    unknown = subprocess.run([kstress, "run", "nightly-typo"], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=60)
    shipped = unknown.stderr.rsplit(": ", 1)[-1]
    assert unknown.returncode == 2 and {"default", "quick", "nightly"} <= set(shipped.strip(" )\n").split(", ")), \
        unknown.stderr

    build = subprocess.run([kstress, "build", "default"], cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (Path(build.stdout.strip()) / "bzImage").is_file()

    run = subprocess.run([kstress, "run", "quick", "--duration", "5", "--seed", "3", "--results", "out"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "site-packages/harness/data/configs/quick.yaml" in (next((elsewhere / "out").iterdir()) /
                                                                "run.json").read_text()
