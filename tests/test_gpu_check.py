"""The parts of bench/gpu_check.sh that run without a GPU: the wheels it brings, and every step end to end with a
tiny model (GPU_CHECK_SMOKE=1), the CUDA tests skipping with their reason."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def test_the_wheels_it_brings_install_offline_into_a_folder_of_their_own(tmp_path):
    wheels = tmp_path / "wheels"
    fetched = subprocess.run(["bash", os.path.join(ROOT, "bench", "fetch_gpu_wheels.sh"), str(wheels)],
                             capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        pytest.skip(f"PyPI cannot be reached from here: {fetched.stderr.strip().splitlines()[-1:]}")
    names = os.listdir(wheels)
    assert any(name.startswith("pytest-") for name in names) and all(name.endswith(".whl") for name in names)
    assert sum(os.path.getsize(wheels / name) for name in names) < 8 << 20  # travels with the check
    target = tmp_path / "deps"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                                str(wheels), "--target", str(target), "pytest"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    where = subprocess.run([sys.executable, "-c", "import pytest; print(pytest.__file__)"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert where.stdout.startswith(str(target)), where


def test_every_step_runs_with_a_tiny_model(tmp_path):
    out = tmp_path / "gpu-check"
    # every part but long512, short and mpnet (long's code at another length, on other data, with another encoder)
    # and the compiled ones (left out of smoke runs): the parts' bench runs are the minutes of this test
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), str(out), "tests", "profile", "long"],
                          capture_output=True, text=True, timeout=540,
                          env={**os.environ, "GPU_CHECK_SMOKE": "1",  # its `python` is the one running the tests
                               "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "report.md").read_text()
    for section in ("# GPU check", "## CUDA tests", "## Speed, long documents"):
        assert section in report, report
    assert "all steps passed" in report
    assert "(c)/(a): training" in report and "(c)/(b): training" in report
    assert "(d)/(c): training" in report  # chunking, on the long documents
    tests = (out / "cuda-tests.txt").read_text()
    assert ("needs a CUDA GPU" in tests and " skipped" in tests) or " passed" in tests, tests[-2000:]
    assert "## Speed, long documents, 300 tokens, (c) profiled" in report
    profiled = (out / "profile-profile.txt").read_text()
    assert "2 training steps profiled" in profiled and "by host time:" in profiled and "aten::" in profiled
    long_docs = (out / "speed-long.txt").read_text()
    assert "real tokens per timed example" in long_docs
