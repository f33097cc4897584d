"""The parts of bench/gpu_check.sh that run without a GPU: the wheels it brings, and every step end to end with a
tiny model (GPU_CHECK_SMOKE=1), the CUDA tests skipping with their reason."""
import gzip
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import FILLER, KEYWORDS, ROOT


def bench_script(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_payload = bench_script("gpu_payload")


@pytest.mark.slow
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


def write_laws(path, n, seed):
    """EURLEX57K's schema (bench/gpu_payload.py reads the shared files): id, text and the three label lists."""
    import random

    rng, labels = random.Random(seed), sorted(KEYWORDS)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            domains = rng.sample(labels, rng.randint(1, 2))
            words = [rng.choice(FILLER) for _ in range(rng.randint(20, 90))] + [KEYWORDS[d][0] for d in domains]
            rng.shuffle(words)
            f.write(json.dumps({"id": f"3{i:04d}R", "text": " ".join(words), "domains": domains,
                                "microthesauri": domains, "descriptors": domains}) + "\n")


@pytest.fixture(scope="module")
def shared_laws(tiny_bert, tmp_path_factory):
    """Laws of the shared files' schema, and the tiny BERT with the 512 positions speed.py's 300 tokens need."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tmp_path = tmp_path_factory.mktemp("shared")
    encoder = str(tmp_path / "encoder")
    config = BertConfig.from_pretrained(tiny_bert)
    config.max_position_embeddings = 512
    BertModel(config).save_pretrained(encoder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(encoder)
    shared = tmp_path / "eurlex57k"
    shared.mkdir()
    write_laws(shared / "train.jsonl.gz", 100, seed=0)
    write_laws(shared / "validation.jsonl.gz", 30, seed=1)
    return shared, encoder


def test_the_payload_holds_the_first_laws_and_the_encoder_in_half_precision_within_its_cap(shared_laws, tmp_path):
    import torch
    from safetensors.torch import load_file

    shared, encoder = shared_laws
    payload = tmp_path / "payload"
    gpu_payload.main([str(payload), "--data", str(shared), "--model", encoder, "--laws", "80", "--val-laws", "20"])
    with gzip.open(payload / "laws" / "train.jsonl.gz", "rt", encoding="utf-8") as f, \
            gzip.open(shared / "train.jsonl.gz", "rt", encoding="utf-8") as g:
        assert f.read().splitlines() == g.read().splitlines()[:80]  # the first laws, unchanged
    weights = load_file(payload / "model" / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    with pytest.raises(SystemExit, match="over --max-mb"):
        gpu_payload.main([str(payload), "--data", str(shared), "--model", encoder, "--max-mb", "0.001"])
    assert (payload / "model" / "model.safetensors").is_file()  # the payload refused leaves the one before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".payload-")]


@pytest.mark.slow
def test_every_step_runs_with_a_tiny_model(shared_laws, tmp_path):
    shared, encoder = shared_laws
    payload = tmp_path / "payload"
    gpu_payload.main([str(payload), "--data", str(shared), "--model", encoder, "--laws", "80", "--val-laws", "20"])
    out = tmp_path / "gpu-check"
    # tests, the profile of (c) and the laws (a) to (d); long, long512, short and mpnet run the same code on other
    # data, and the compiled parts are left out of smoke runs: the parts' bench runs are the minutes of this test
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), str(out), "tests", "profile", "laws"],
                          capture_output=True, text=True, timeout=540,
                          env={**os.environ, "GPU_CHECK_SMOKE": "1", "GPU_PAYLOAD": str(payload),
                               # its `python` is the one running the tests
                               "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "report.md").read_text()
    for section in ("# GPU check", "## CUDA tests", "## Speed, long documents, 300 tokens, (c) profiled",
                    "## Speed, EU laws (bench/payload)"):
        assert section in report, report
    assert "all steps passed" in report
    assert "(c)/(a): training" in report and "(c)/(b): training" in report
    assert "(d)/(c): training" in report  # chunking, on the laws
    tests = (out / "cuda-tests.txt").read_text()
    import torch

    if torch.cuda.is_available():  # the CUDA tests ran, and passed
        assert " passed" in tests and " failed" not in tests and "needs a CUDA GPU" not in tests, tests[-2000:]
    else:  # each skipped, saying why, and none passed as though it had run
        assert "needs a CUDA GPU" in tests and " skipped" in tests and " passed" not in tests, tests[-2000:]
    profiled = (out / "profile-profile.txt").read_text()
    assert "training steps profiled: 2," in profiled and "by host time:" in profiled and "aten::" in profiled
    assert "evaluation batches profiled: 1," in profiled  # the 16 validation documents of the smoke run
    assert "(c) an encoder layer's linear products alone" in (out / "speed-profile.txt").read_text()
    assert "real tokens per timed example" in (out / "speed-laws.txt").read_text()
