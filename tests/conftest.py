"""Shared fixtures: a tiny random BERT written to disk, and a synthetic multi-label task it can learn."""
import csv
import hashlib
import json
import os
import random
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")

LABELS = ["apple", "banana", "cherry", "date", "elder"]
FILLER = [f"filler{i}" for i in range(40)]
KEYWORDS = {label: [f"{label}word{j}" for j in range(3)] for label in LABELS}
# Fixtures that train runs of their own (or start a server) for a few tests: those tests are in the full tier only.
SLOW_FIXTURES = {"finished_run", "base_run", "chunked_run", "late_evidence", "shared_laws", "postgres_url", "cuda_run"}
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def synthetic_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Text of filler words; a label is present exactly when one of its keywords is in the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [label for label in LABELS if rng.random() < 0.3]
        words = rng.choices(FILLER, k=rng.randint(4, 20)) + [rng.choice(KEYWORDS[label]) for label in labels]
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    return rows


def write_flag_tsv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", *LABELS])
        for i, (text, labels) in enumerate(rows):
            writer.writerow([f"ex{i}", text, *[int(label in labels) for label in LABELS]])


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with a word-level vocab of the synthetic task's words."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + [w for ws in KEYWORDS.values() for w in ws]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab_file), model_max_length=64).save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)


def tiny_encoder(folder, model_type: str, fields: dict) -> str:
    """A random encoder of this family with a word-level BERT tokenizer of the synthetic task's words."""
    from transformers import AutoConfig, AutoModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + [w for ws in KEYWORDS.values() for w in ws]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt"), model_max_length=64).save_pretrained(str(folder))
    config = AutoConfig.for_model(model_type, vocab_size=len(vocab), max_position_embeddings=72, pad_token_id=0,
                                  **fields)
    AutoModel.from_config(config).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("synthetic")
    write_flag_tsv(folder / "train.tsv", synthetic_rows(480, seed=1))
    write_flag_tsv(folder / "validation.tsv", synthetic_rows(120, seed=2))
    write_flag_tsv(folder / "test.tsv", synthetic_rows(120, seed=3))
    return str(folder)


def tiny_train_args(model, data, out, *extra) -> list[str]:
    """Flags for a quick run of the tiny BERT: a random model needs a larger learning rate than a pretrained one,
    and its random word embeddings must be trained."""
    return ["--model", model, "--data", data, "--output-dir", str(out), "--epochs", "6", "--batch-size", "16",
            "--lr", "3e-3", "--head-lr-mult", "1", "--warmup", "0.1", "--max-length", "32", "--cache-dir", "",
            "--amp", "off", "--log-every", "5", "--freeze-embeddings", "none", *extra]


@pytest.fixture(scope="session")
def trained_run(tiny_bert, synthetic_folder, tmp_path_factory):
    """A finished tiny run: (run folder, train.main's summary, the metrics.jsonl records)."""
    import train

    out = tmp_path_factory.mktemp("run")
    summary = train.main(tiny_train_args(tiny_bert, synthetic_folder, out))
    return out, summary, epochs_of(out)


@pytest.fixture
def previous_run(trained_run, tmp_path):
    """A copy of a finished run: a failed --overwrite must leave every byte of it."""
    folder = tmp_path / "previous"
    shutil.copytree(trained_run[0], folder)
    before = fingerprint(folder)
    yield folder
    assert fingerprint(folder) == before


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def train_fails(tiny_bert, data, run_folder, capsys, fragment, *extra):
    import train

    argv = tiny_train_args(tiny_bert, str(data), run_folder, "--overwrite", *extra)
    return expect_error(train.main, argv, capsys, fragment)


def expect_error(main, argv, capsys, fragment) -> str:
    """`main(argv)` (a CLI's main) ends with exit status 2 and one `error:` line holding `fragment`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], err
    return errors[0]


def fingerprint(folder) -> dict:
    """Every file below `folder` (relative path -> content hash)."""
    return {os.path.relpath(os.path.join(root, name), folder):
            hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
            for root, _, names in os.walk(folder) for name in names}


def epochs_of(folder) -> list[dict]:
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]
