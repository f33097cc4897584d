"""export.py writes a checkpoint's model as a Hugging Face folder or ONNX that give the checkpoint's probabilities:
through transformers' pipeline, through onnxruntime, and through predict.py, long documents included."""
import importlib.util
import json
import os

import numpy as np
import pytest

import export
import predict
import train
from conftest import SMALL, fingerprint, synthetic_rows, tiny_encoder

TEXTS = [text for text, _ in synthetic_rows(12, seed=7)]
LONG_TEXTS = [" ".join(text for text, _ in synthetic_rows(4, seed=s)) for s in range(8, 12)]


def tiny_run(tmp_path, synthetic_folder, model_type: str, *flags) -> str:
    """best.pt of one quick fp32 epoch of a random encoder of this family."""
    model = tiny_encoder(tmp_path / model_type, model_type, SMALL)
    out = tmp_path / "run"
    train.main(["--model", model, "--data", synthetic_folder, "--output-dir", str(out), "--epochs", "1",
                "--max-train-samples", "96", "--max-eval-samples", "48", "--max-length", "32", "--cache-dir", "",
                "--amp", "off", *flags])
    return str(out / "best.pt")


def probabilities(records) -> np.ndarray:
    names = list(records[0]["probabilities"])
    return np.array([[record["probabilities"][name] for name in names] for record in records])


def predicted(model: str, texts, capsys) -> list[dict]:
    records = predict.main(["--ckpt", model, "--json", *texts])
    capsys.readouterr()
    return records


@pytest.mark.slow
@pytest.mark.parametrize("model_type,pooling,native", [("bert", "cls", True), ("roberta", "cls", True),
                                                       ("mpnet", "cls", True), ("bert", "mean", False),
                                                       ("mpnet", "mean", False)])
def test_the_pipeline_on_a_hf_folder_gives_predicts_probabilities(model_type, pooling, native, synthetic_folder,
                                                                  tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, pipeline

    ckpt = tiny_run(tmp_path, synthetic_folder, model_type, "--pooling", pooling, "--features", "encoder")
    folder = str(tmp_path / "hf")
    result = export.main(["--ckpt", ckpt, "--out", folder])
    assert result["remote_code"] is not native and result["max_abs_difference"] <= 1e-4
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {str(i): name for i, name in enumerate(["apple", "banana", "cherry", "date", "elder"])}
    assert len(config["multi_label"]["thresholds"]["per_label"]) == 5
    assert os.path.isfile(os.path.join(folder, "model.safetensors"))
    if native:  # the family's own class, no code from the folder
        assert type(AutoModelForSequenceClassification.from_pretrained(folder)).__name__.endswith(
            "ForSequenceClassification")
    else:
        with pytest.raises(ValueError, match="trust_remote_code"):
            AutoModelForSequenceClassification.from_pretrained(folder)
    served = pipeline("text-classification", model=folder, top_k=None, trust_remote_code=not native)(TEXTS)
    ours = predicted(ckpt, TEXTS, capsys)
    names = list(ours[0]["probabilities"])
    theirs = np.array([[{d["label"]: d["score"] for d in row}[name] for name in names] for row in served])
    assert np.abs(theirs - probabilities(ours)).max() <= 1e-4
    if model_type == "mpnet" and importlib.util.find_spec("onnxruntime"):  # its relative-position bias, in ONNX
        export.main(["--ckpt", ckpt, "--out", str(tmp_path / "onnx"), "--format", "onnx"])
        onnx = predicted(str(tmp_path / "onnx"), TEXTS, capsys)
        assert np.abs(probabilities(onnx) - probabilities(ours)).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("features,chunk_pool", [("encoder", "mean"), ("both", "max")])
def test_checkpoint_hf_folder_and_onnx_label_long_documents_alike(features, chunk_pool, synthetic_folder, tmp_path,
                                                                   capsys):
    pytest.importorskip("onnxruntime", reason="ONNX needs the [export] extra (onnxruntime)")
    ckpt = tiny_run(tmp_path, synthetic_folder, "bert", "--long-doc", "chunk", "--max-length", "16",
                    "--chunk-pool", chunk_pool, "--features", features)
    export.main(["--ckpt", ckpt, "--out", str(tmp_path / "hf")])
    onnx = export.main(["--ckpt", ckpt, "--out", str(tmp_path / "onnx"), "--format", "onnx"])
    assert onnx["max_abs_difference"] <= 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"] + (
        ["tfidf_scores"] if features == "both" else [])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "logits"]
    stored = json.loads(session.get_modelmeta().custom_metadata_map["multi_label"])
    assert stored["label_names"] == ["apple", "banana", "cherry", "date", "elder"] and stored["thresholds"]
    texts = TEXTS[:4] + LONG_TEXTS  # the long ones take several 16-token windows
    routes = [predicted(model, texts, capsys) for model in (ckpt, str(tmp_path / "hf"), str(tmp_path / "onnx"))]
    for records in routes[1:]:
        assert [r["predicted"] for r in records] == [r["predicted"] for r in routes[0]]
        assert np.abs(probabilities(records) - probabilities(routes[0])).max() <= 1e-4
    for spec in ("global", "0.4"):
        labels = [[r["predicted"] for r in predict.main(["--ckpt", m, "--json", "--thresholds", spec, *texts])]
                  for m in (ckpt, str(tmp_path / "onnx"))]
        assert labels[0] == labels[1]


def run_export(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        export.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_bad_exports_get_one_line_and_leave_what_was_there(trained_run, tmp_path, capsys):
    out, _, _ = trained_run
    ckpt = str(out / "best.pt")
    assert "--format pt: choose one of hf, onnx" in run_export(["--ckpt", ckpt, "--out", str(tmp_path / "x"), "--format", "pt"], capsys)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    before = fingerprint(taken)
    assert "exists; give --overwrite" in run_export(["--ckpt", ckpt, "--out", str(taken)], capsys)
    assert "did not write" in run_export(["--ckpt", ckpt, "--out", str(taken), "--overwrite"], capsys)
    assert fingerprint(taken) == before
    foreign = tmp_path / "foreign.pt"
    import torch

    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "not a checkpoint of this project" in run_export(["--ckpt", str(foreign), "--out", str(tmp_path / "y")],
                                                            capsys)
    assert not (tmp_path / "y").exists()
    with pytest.raises(SystemExit):
        predict.main(["--ckpt", str(taken), "some text"])
    assert "not a folder export.py wrote" in capsys.readouterr().err


def test_overwrite_replaces_an_earlier_export_whole_and_nothing_else(trained_run, tmp_path, capsys):
    out, _, _ = trained_run
    folder = tmp_path / "hf"
    export.main(["--ckpt", str(out / "best.pt"), "--out", str(folder)])
    (folder / "serve.py").write_text("the user's own")
    before = fingerprint(folder)
    assert "did not write (serve.py)" in run_export(["--ckpt", str(out / "best.pt"), "--out", str(folder),
                                                     "--overwrite"], capsys)
    assert fingerprint(folder) == before
    (folder / "serve.py").unlink()
    (folder / "config.json").write_text((folder / "config.json").read_text())  # a file of its own, rewritten
    export.main(["--ckpt", str(out / "best.pt"), "--out", str(folder), "--overwrite"])
    assert (folder / "model.safetensors").is_file()
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []
    assert predicted(str(folder), TEXTS[:2], capsys)[0]["predicted"] == predicted(str(out / "best.pt"), TEXTS[:2],
                                                                                  capsys)[0]["predicted"]


@pytest.mark.slow
def test_a_fused_model_serves_alike_from_its_checkpoint_hf_folder_and_onnx_with_the_folders_own_tfidf(
        synthetic_folder, tmp_path, capsys):
    """The fused head (--features both) reads the text's TF-IDF vector: the folders carry the vocabulary
    (tfidf.json) and the code that computes the vector from it (tfidf.py; for ONNX, whose graph has no sparse
    product, its product with the head's sparse TF-IDF weights too), and each route gives the checkpoint's
    probabilities from them; transformers' pipeline, which cannot pass the vector, is refused in one line."""
    import sys

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    ckpt = tiny_run(tmp_path, synthetic_folder, "bert", "--pooling", "cls", "--features", "both")
    hf, onnx = str(tmp_path / "hf"), str(tmp_path / "onnx")
    assert export.main(["--ckpt", ckpt, "--out", hf])["remote_code"]  # no native class reads TF-IDF
    assert {"tfidf.json", "tfidf.py", "fused_head.py", "modeling_multilabel.py"} <= set(os.listdir(hf))
    ours = probabilities(predicted(ckpt, TEXTS, capsys))
    assert np.abs(probabilities(predicted(hf, TEXTS, capsys)) - ours).max() <= 1e-4

    sys.path.insert(0, hf)  # what README tells a user of the folder to run
    try:
        from tfidf import TfidfVocabulary, TfidfWeights
    finally:
        sys.path.remove(hf)
        sys.modules.pop("tfidf", None)
    ids, values = TfidfVocabulary.load(hf).batch(TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForSequenceClassification.from_pretrained(hf, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt"),
                       tfidf_ids=torch.from_numpy(ids), tfidf_values=torch.from_numpy(values)).logits
    assert np.abs(torch.sigmoid(logits).numpy() - ours).max() <= 1e-4
    with pytest.raises(ValueError, match="tfidf_ids and tfidf_values"):
        pipeline("text-classification", model=hf, top_k=None, trust_remote_code=True)(TEXTS)

    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        assert export.main(["--ckpt", ckpt, "--out", onnx, "--format", "onnx"])["max_abs_difference"] <= 1e-4
        assert np.abs(probabilities(predicted(onnx, TEXTS, capsys)) - ours).max() <= 1e-4
        session = onnxruntime.InferenceSession(os.path.join(onnx, "model.onnx"))
        encoded = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="np")
        found = session.run(["probabilities"], {"input_ids": encoded["input_ids"].astype(np.int64),
                                                "attention_mask": encoded["attention_mask"].astype(np.int64),
                                                "tfidf_scores": TfidfWeights.load(onnx).scores(ids, values)})[0]
        assert np.abs(found - ours).max() <= 1e-4
