"""The CLIs as real processes, for the tests that run them so: run to the end, started and read line by line, and
their one error line."""
import os
import subprocess
import sys
import time

from conftest import ROOT

def cli(script, *argv, cwd=ROOT, umask=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def start(script, *argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-u", os.path.join(ROOT, script), *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(process, prefix, limit=120):
    deadline = time.time() + limit
    for line in process.stdout:
        if line.startswith(prefix) or time.time() > deadline:
            return line
    raise AssertionError(f"the process ended before printing {prefix!r}: {process.stderr.read()[-2000:]}")


def one_error_line(done: subprocess.CompletedProcess, fragment: str, status: int = 2) -> str:
    assert done.returncode == status, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], done.stderr[-3000:]
    return lines[0]
