"""An exported folder read back for serving (evaluate.py, predict.py): a Hugging Face folder or ONNX behind the
classifier's call, with its metadata and tokenizer. Neither format runs code from the folder."""
import json
import os

import numpy as np
import torch
from torch import nn

from data.tfidf import FILE_NAME as TFIDF_FILE
from data.tfidf import WEIGHTS_FILE, TfidfVocabulary, TfidfWeights
from model.classifier import document_rows
from model.export_format import METADATA_KEY, ONNX_FILE, ExportError, export_problem
from model.fused_head import SPARSE_KEYS, sparse_state

class ServedModel(nn.Module):
    """An exported model behind the classifier's call: (input_ids, attention_mask, window_doc, num_docs,
    window_groups, tfidf_ids, tfidf_values) -> logits, a row per window or (with window_doc) per document, pooled
    as in training. `logits_of(ids, mask, tfidf_ids, tfidf_values)` sees a row per window, each with its
    document's TF-IDF vector (whose part is constant over the windows, so pooling keeps it as the checkpoint's)."""

    def __init__(self, logits_of, chunk_pool: str, module: nn.Module | None = None):
        super().__init__()
        self.logits_of, self.chunk_pool, self.module = logits_of, chunk_pool, module
        # the fused head's sparse TF-IDF weights ({SPARSE_KEYS: tensors}), which the loader checks as a
        # checkpoint's; None without a fused head
        fused = getattr(module, "fused", None)
        self.tfidf_weights = None if fused is None else {key: getattr(fused, key) for key in SPARSE_KEYS}

    def forward(self, input_ids, attention_mask, window_doc=None, num_docs=None, window_groups=None, tfidf_ids=None,
                tfidf_values=None):
        rows = () if tfidf_ids is None else (tfidf_ids, tfidf_values) if window_doc is None else (
            tfidf_ids[window_doc], tfidf_values[window_doc])
        return document_rows(lambda ids, mask, *tfidf: self.logits_of(ids, mask, *tfidf).float(), input_ids,
                             attention_mask, window_doc, num_docs, window_groups, self.chunk_pool, rows)


def load_exported(folder: str, device: str = "cpu") -> tuple[ServedModel, object, dict]:
    """(the model, its tokenizer, its metadata) of a folder export_model wrote. Neither format runs code from
    the folder: model/hf_modeling.py is this repository's own copy of the folder's modeling file."""
    problem = export_problem(folder)
    if problem:
        raise ExportError(problem)
    if os.path.isfile(os.path.join(folder, ONNX_FILE)):
        model, meta = onnx_model(os.path.join(folder, ONNX_FILE), device)
    elif os.path.isfile(os.path.join(folder, "config.json")):
        model, meta = hf_model(folder, device)
    else:
        raise ExportError(f"{folder}: not a folder export.py wrote (no {ONNX_FILE} or config.json)")
    try:
        tokenizer = tokenizer_class(folder).from_pretrained(folder, trust_remote_code=False)  # never runs or asks
    except (OSError, ValueError) as e:
        raise ExportError(f"{folder}: cannot load its tokenizer: {str(e).splitlines()[0]}") from None
    if meta["config"].get("features") in ("auto", "both"):
        meta["tfidf"] = read_tfidf(folder)
    return model, tokenizer, meta


def read_tfidf(folder: str) -> dict:
    """The vocabulary of an export's fused head, read by this repository's data/tfidf.py (the folder's tfidf.py
    is for its users, and is not run)."""
    path = os.path.join(folder, TFIDF_FILE)
    try:
        return TfidfVocabulary.load(folder).state()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: the fused head's TF-IDF vocabulary cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None


def tokenizer_class(folder: str):
    """The class tokenizer_config.json names: AutoTokenizer would read config.json too, and ask about its
    modeling file."""
    import transformers

    try:
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            name = json.load(f).get("tokenizer_class")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        name = None
    found = getattr(transformers, name, None) if isinstance(name, str) else None
    return found if isinstance(found, type) else transformers.AutoTokenizer


def read_metadata(raw, where: str) -> dict:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict) or "label_names" not in raw:
        raise ExportError(f"{where}: not written by export.py (no {METADATA_KEY} metadata with a run config)")
    return raw


def label_maps_problem(id2label, names: list) -> str | None:
    """The folder's two label lists, config.json's id2label (what pipeline() prints) and the metadata's (what
    predict.py prints), must name the same labels in the same order."""
    if not isinstance(id2label, dict) or sorted(id2label, key=str) != sorted(map(str, range(len(id2label))), key=str):
        return "its id2label is not a map from 0, 1, ... to label names"
    listed = [id2label[str(i)] for i in range(len(id2label))]
    if listed != list(names):
        first = next((i for i, (a, b) in enumerate(zip(listed, names)) if a != b), min(len(listed), len(names)))
        return (f"its id2label ({len(listed)} labels) and its {METADATA_KEY} label names ({len(names)}) disagree "
                f"from label {first} on")
    return None


def hf_model(folder: str, device: str) -> tuple[ServedModel, dict]:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    from model.hf_modeling import MultiLabelEncoderClassifier, MultiLabelEncoderConfig

    config_file = os.path.join(folder, "config.json")
    try:
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{config_file}: not a readable config ({e})") from None
    meta = read_metadata(config.get(METADATA_KEY) if isinstance(config, dict) else None, config_file)
    problem = label_maps_problem(config.get("id2label"), meta["label_names"])
    if problem:
        raise ExportError(f"{config_file}: {problem}; export again from the checkpoint")
    transformers_logging.disable_progress_bar()
    try:
        if config.get("model_type") == MultiLabelEncoderConfig.model_type:
            model = own_model(folder, MultiLabelEncoderClassifier, MultiLabelEncoderConfig)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
        model = model.to(device).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ExportError(f"{folder}: cannot load the model: {str(e).splitlines()[0][:200]}") from None

    def logits_of(ids, mask, *tfidf):
        return model(input_ids=ids, attention_mask=mask, **dict(zip(("tfidf_ids", "tfidf_values"), tfidf))).logits

    served = ServedModel(logits_of, meta["config"]["chunk_pool"], model)
    return served, meta


def own_model(folder: str, model_class, config_class):
    """model/hf_modeling.py's class with the folder's weights, loaded whole (strict): a folder of export format 2
    holds its fused head's TF-IDF block dense, read as today's sparse block (`sparse_state`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = config_class.from_pretrained(folder)
    try:
        weights = sparse_state(load_file(os.path.join(folder, "model.safetensors")))
    except SafetensorError as e:
        raise ValueError(f"model.safetensors: {e}") from None
    kept = weights.get("fused.tfidf_weights")
    config.tfidf_kept = 0 if kept is None else len(kept)
    model = model_class(config)
    model.load_state_dict(weights, strict=True)
    return model


def onnx_model(path: str, device: str) -> tuple[ServedModel, dict]:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(f"{path}: serving ONNX needs onnxruntime: pip install -e '.[export]'") from None
    providers = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else ["CPUExecutionProvider"]
    if providers[0] not in onnxruntime.get_available_providers():
        raise ExportError(f"--device {device}: this onnxruntime has no {providers[0]}")
    try:
        session = onnxruntime.InferenceSession(path, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types, which it does not export
        raise ExportError(f"{path}: not a model onnxruntime can load ({str(e).splitlines()[0][:200]})") from None
    meta = read_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path)
    outputs = {output.name: output.shape for output in session.get_outputs()}
    width = (outputs.get("logits") or [None, None])[-1]
    if isinstance(width, int) and isinstance(meta.get("label_names"), list) and width != len(meta["label_names"]):
        raise ExportError(f"{path}: its model gives {width} logits, but its {METADATA_KEY} names "
                          f"{len(meta['label_names'])} labels; export again from the checkpoint")

    names = {node.name for node in session.get_inputs()}
    weights = None
    if "tfidf_scores" in names:  # export format 3: the TF-IDF part is computed beside the graph
        try:
            weights = TfidfWeights.load(os.path.dirname(path))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{os.path.join(os.path.dirname(path), WEIGHTS_FILE)}: the fused head's TF-IDF "
                              f"weights cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None

    def logits_of(ids, mask, *tfidf):
        inputs = {"input_ids": ids.cpu().numpy().astype(np.int64),
                  "attention_mask": mask.cpu().numpy().astype(np.int64)}
        if tfidf and weights is not None:
            inputs["tfidf_scores"] = weights.scores(tfidf[0].cpu().numpy(), tfidf[1].cpu().numpy())
        elif tfidf:  # export format 2: the graph holds the dense block
            inputs.update(tfidf_ids=tfidf[0].cpu().numpy().astype(np.int64),
                          tfidf_values=tfidf[1].cpu().numpy().astype(np.float32))
        return torch.from_numpy(session.run(["logits"], inputs)[0]).to(ids.device)

    served = ServedModel(logits_of, meta["config"]["chunk_pool"])
    if weights is not None:
        served.tfidf_weights = {"tfidf_offsets": torch.from_numpy(weights.offsets),
                                "tfidf_labels": torch.from_numpy(weights.labels),
                                "tfidf_weights": torch.from_numpy(weights.weights)}
    return served, meta
