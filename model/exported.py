"""A trained classifier in the forms others serve, and back again: a Hugging Face folder (safetensors, id2label,
problem_type multi_label_classification, so `pipeline("text-classification")` applies a sigmoid) and ONNX (inputs
input_ids and attention_mask, outputs the sigmoid probabilities and the logits). Each carries the run's label
names, tuned thresholds and config under METADATA_KEY: a key of config.json, or of the ONNX model's metadata.

CLS pooling exports as the family's own transformers class where its head is dense -> tanh -> linear (BERT,
RoBERTa, XLM-R, MPNet): the dense layer becomes eps * I and the linear layer absorbs 1/eps, and tanh(eps x) / eps
is x to within eps^2 |x|^3 / 3. Mean pooling, and CLS on the other families, export with model/hf_modeling.py,
which loading runs with trust_remote_code=True. `export_model` measures the export against the checkpoint's
model before it writes anything."""
import contextlib
import io
import json
import logging
import os
import shutil
import warnings

import numpy as np
import torch
from torch import nn

from data.errors import InputError
from data.tfidf import FILE_NAME as TFIDF_FILE
from data.tfidf import TfidfVocabulary
from model import build_from_checkpoint, document_rows, supported_attention

METADATA_KEY = "multi_label"
FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
REMOTE_CODE_FILE = "modeling_multilabel.py"
TANH_SCALE = 1e-4
AGREEMENT = 1e-4  # the largest difference of a probability an export may show against the checkpoint
HF_MODELING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_modeling.py")
FUSED_HEAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fused_head.py")  # hf_modeling.py imports it
TFIDF_CODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tfidf.py")


MANIFEST_FILE = "export-manifest.json"  # the files an export wrote, with their sizes: written last
BINARY = (".safetensors", ".onnx", ".bin")  # files whose size must be as written (hand-edited text files may differ)


class ExportError(InputError):
    """An export that cannot be made or read: one line naming what is wrong."""


def write_manifest(folder: str) -> None:
    files = {name: os.path.getsize(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as f:
        json.dump({"written_by": "export.py", "format_version": FORMAT_VERSION, "files": files}, f, indent=2)


def read_manifest(folder: str) -> dict | None:
    """{file name: size} of what the export in `folder` wrote; None where there is no manifest (an export from
    before 2026-12-04, or not an export)."""
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            files = json.load(f)["files"]
        if not all(isinstance(n, str) and n == os.path.basename(n) and n not in ("", ".", "..")
                   and isinstance(v, int) for n, v in files.items()):
            raise ValueError("a file name or size of another kind")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: not a manifest export.py wrote ({type(e).__name__})") from None
    return files


def export_problem(folder: str) -> str | None:
    """What makes the export in `folder` unusable, read before any of it is used, or None: a file it wrote that is
    missing, or weights of another size than were written (a copy cut short)."""
    for name, size in (read_manifest(folder) or {}).items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{path}: missing; the export wrote it (copy the whole folder, or export again)"
        found = os.path.getsize(path)
        if name.endswith(BINARY) and found != size:
            return (f"{path}: {found:,} bytes, but the export wrote {size:,} (cut short by an interrupted copy?); "
                    "copy it again, or export again")
    return None


def require_onnx() -> None:
    """ONNX export and serving need the [export] extra (torch's exporter runs on onnxscript)."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: pip install -e '.[export]'")


def metadata(state: dict) -> dict:
    """What a served model needs beyond its weights, as plain JSON."""
    meta = {"format_version": FORMAT_VERSION, "label_names": list(state["label_names"]),
            "thresholds": state["thresholds"], "config": state["config"]}
    if state.get("hierarchy") is not None:  # --label-hierarchy: each label's parent, for the roll-up (docs/serving.md)
        meta["hierarchy"] = state["hierarchy"]
    return meta


def serving_model(state: dict, attention: str = "sdpa") -> tuple[nn.Module, object]:
    """(the checkpoint's model in fp32 with PyTorch's and transformers' own kernels, eval mode; its tokenizer).
    ONNX takes eager attention: ONNX has no fused attention to map SDPA to, and MPNet's relative-position bias
    on SDPA (model/mpnet_attention.py) does not survive torch.export's decomposition at dynamic lengths."""
    config = {**state["config"], "fast_paths": "off", "compiled": "off", "attention_impl": attention}
    model, tokenizer = build_from_checkpoint({**state, "config": config})
    tokenizer.model_max_length = config["max_length"]
    return model.eval(), tokenizer


def label_maps(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": "multi_label_classification"}


def native_model(classifier: nn.Module, state: dict):
    """The family's AutoModelForSequenceClassification reproducing a CLS-pooling classifier, or None where its
    head has no dense -> tanh -> linear pair to make linear (`export_model` still measures the result)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    fields = dict(state["encoder_config"])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields, **label_maps(state["label_names"]),
                                  **{METADATA_KEY: metadata(state)})
    native = AutoModelForSequenceClassification.from_config(config,
                                                            attn_implementation=supported_attention(config, "sdpa"))
    loaded = native.base_model.load_state_dict(classifier.encoder.state_dict(), strict=False)
    if loaded.unexpected_keys or any(not key.startswith("pooler.") for key in loaded.missing_keys):
        return None
    head, pooler = getattr(native, "classifier", None), getattr(native.base_model, "pooler", None)
    if isinstance(getattr(head, "dense", None), nn.Linear) and isinstance(getattr(head, "out_proj", None), nn.Linear):
        dense, out = head.dense, head.out_proj
    elif isinstance(head, nn.Linear) and isinstance(getattr(pooler, "dense", None), nn.Linear):
        dense, out = pooler.dense, head
    else:
        return None
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0]) * TANH_SCALE)
        dense.bias.zero_()
        out.weight.copy_(classifier.head.weight / TANH_SCALE)
        out.bias.copy_(classifier.head.bias)
    return native.eval()


def remote_code_model(classifier: nn.Module, state: dict):
    """model/hf_modeling.py's class holding the classifier's weights under the same names."""
    from model.hf_modeling import MultiLabelEncoderClassifier, MultiLabelEncoderConfig

    module = os.path.splitext(REMOTE_CODE_FILE)[0]
    tfidf_size = len(state["tfidf"]["terms"]) if classifier.fused is not None else None
    config = MultiLabelEncoderConfig(encoder_config=state["encoder_config"], pooling=state["config"]["pooling"],
                                     tfidf_size=tfidf_size, chunk_pool=state["config"]["chunk_pool"],
                                     **label_maps(state["label_names"]), **{METADATA_KEY: metadata(state)})
    config.auto_map = {"AutoConfig": f"{module}.MultiLabelEncoderConfig",
                       "AutoModelForSequenceClassification": f"{module}.MultiLabelEncoderClassifier"}
    model = MultiLabelEncoderClassifier(config)
    model.load_state_dict(classifier.state_dict())
    return model.eval()


class ProbabilitiesAndLogits(nn.Module):
    """The graph ONNX gets: a window's sigmoid probabilities, and its logits (which chunked documents pool); with a
    fused head it reads the window's document's TF-IDF vector too."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, tfidf_ids=None, tfidf_values=None):
        logits = self.classifier(input_ids, attention_mask, tfidf_ids=tfidf_ids, tfidf_values=tfidf_values)
        return torch.sigmoid(logits), logits


def probe_tfidf(state: dict, n: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Random TF-IDF rows of the vocabulary (index and value 0 as padding, as batches pad them), or (None, None)
    for a model without a fused head."""
    if state["config"]["features"] == "encoder":
        return None, None
    generator = torch.Generator().manual_seed(1)
    size = max(1, len(state["tfidf"]["terms"]))
    ids = torch.randint(0, size, (n, 12), generator=generator)
    values = torch.rand((n, 12), generator=generator)
    values[:, -3:] = 0
    ids[:, -3:] = 0
    return ids, values / values.norm(dim=1, keepdim=True)


def probe_inputs(state: dict, tokenizer, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences of varied lengths, padded, starting and ending as the tokenizer's texts do."""
    generator = torch.Generator().manual_seed(0)
    length = min(state["config"]["max_length"], 64)
    ids = torch.randint(len(tokenizer.all_special_ids) + 1, len(tokenizer), (n, length), generator=generator)
    mask = torch.ones_like(ids)
    for i in range(n):
        end = max(3, length - i * length // n)
        mask[i, end:] = 0
        ids[i, end:] = tokenizer.pad_token_id
        ids[i, 0] = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else ids[i, 0]
        ids[i, end - 1] = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else ids[i, end - 1]
    return ids, mask


def export_model(state: dict, folder: str, fmt: str) -> dict:
    """Write `state`'s model to the new folder `folder` as `fmt` (hf or onnx). Returns what was written:
    {"format", "class", "remote_code", "max_abs_difference"} (the probabilities on `probe_inputs`)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    classifier, tokenizer = serving_model(state, "eager" if fmt == "onnx" else "sdpa")
    if classifier.fused is not None and not classifier.fused.ready:  # the encoder's own head predicts: export that
        classifier.fused = None
        state = {**state, "config": {**state["config"], "features": "encoder"}, "tfidf": None}
    fused = classifier.fused is not None
    ids, mask = probe_inputs(state, tokenizer)
    tfidf = probe_tfidf(state, len(ids))
    with torch.no_grad():
        expected = torch.sigmoid(classifier(ids, mask, tfidf_ids=tfidf[0], tfidf_values=tfidf[1])).numpy()
    os.makedirs(folder)
    tokenizer.save_pretrained(folder)
    if fused:
        write_tfidf(state["tfidf"], folder)
    if fmt == "onnx":
        write_onnx(classifier, state, os.path.join(folder, ONNX_FILE), (ids, mask, *tfidf) if fused else (ids, mask))
        served, chosen, remote = load_exported(folder)[0], "onnx", False
    else:
        model = native_model(classifier, state) if state["config"]["pooling"] == "cls" and not fused else None
        if model is not None:
            with torch.no_grad():
                found = torch.sigmoid(model(input_ids=ids, attention_mask=mask).logits).numpy()
            if np.abs(found - expected).max() > AGREEMENT:
                model = None
        remote = model is None
        if remote:
            model = remote_code_model(classifier, state)
            shutil.copyfile(HF_MODELING, os.path.join(folder, REMOTE_CODE_FILE))
            shutil.copyfile(FUSED_HEAD, os.path.join(folder, os.path.basename(FUSED_HEAD)))
        model.save_pretrained(folder)
        served, chosen = load_exported(folder)[0], type(model).__name__
    with torch.no_grad():
        found = served(ids, mask, tfidf_ids=tfidf[0], tfidf_values=tfidf[1])
        difference = float(np.abs(torch.sigmoid(found).numpy() - expected).max())
    if not difference <= AGREEMENT:
        raise ExportError(f"the {fmt} export disagrees with the checkpoint by {difference:.2g} in a probability "
                          f"(more than {AGREEMENT:g}); nothing was kept")
    write_manifest(folder)
    return {"format": fmt, "class": chosen, "remote_code": remote, "max_abs_difference": difference}


def write_tfidf(tfidf: dict, folder: str) -> None:
    """The TF-IDF vocabulary as tfidf.json, and the code that turns a text into the model's tfidf_ids and
    tfidf_values from it (data/tfidf.py, which needs only NumPy) as tfidf.py."""
    vocabulary = TfidfVocabulary.from_state(tfidf)
    with open(os.path.join(folder, TFIDF_FILE), "w", encoding="utf-8") as f:
        json.dump(vocabulary.state(), f, ensure_ascii=False)
    shutil.copyfile(TFIDF_CODE, os.path.join(folder, "tfidf.py"))


def write_onnx(classifier: nn.Module, state: dict, path: str, example: tuple) -> None:
    """ONNX through torch.export (dynamic batch and length), with `metadata(state)` as JSON in the model's
    metadata_props. The exporter's progress lines, warnings and log are kept off the console."""
    batch, length, terms = torch.export.Dim("batch"), torch.export.Dim("length"), torch.export.Dim("terms")
    names = ["input_ids", "attention_mask", "tfidf_ids", "tfidf_values"][:len(example)]
    shapes = {name: {0: batch, 1: terms if name.startswith("tfidf") else length} for name in names}
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(ProbabilitiesAndLogits(classifier), example, dynamo=True,
                                        input_names=names, output_names=["probabilities", "logits"],
                                        dynamic_shapes=shapes)
            program.model.metadata_props[METADATA_KEY] = json.dumps(metadata(state))
            program.save(path, external_data=False)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ServedModel(nn.Module):
    """An exported model behind the classifier's call: (input_ids, attention_mask, window_doc, num_docs,
    window_groups, tfidf_ids, tfidf_values) -> logits, a row per window or (with window_doc) per document, pooled
    as in training. `logits_of(ids, mask, tfidf_ids, tfidf_values)` sees a row per window, each with its
    document's TF-IDF vector (whose part is constant over the windows, so pooling keeps it as the checkpoint's)."""

    def __init__(self, logits_of, chunk_pool: str, module: nn.Module | None = None):
        super().__init__()
        self.logits_of, self.chunk_pool, self.module = logits_of, chunk_pool, module

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
            model = MultiLabelEncoderClassifier.from_pretrained(
                folder, config=MultiLabelEncoderConfig.from_pretrained(folder))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
        model = model.to(device).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ExportError(f"{folder}: cannot load the model: {str(e).splitlines()[0][:200]}") from None
    def logits_of(ids, mask, *tfidf):
        return model(input_ids=ids, attention_mask=mask, **dict(zip(("tfidf_ids", "tfidf_values"), tfidf))).logits

    served = ServedModel(logits_of, meta["config"]["chunk_pool"], model)
    return served, meta


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

    def logits_of(ids, mask, *tfidf):
        inputs = {"input_ids": ids.cpu().numpy().astype(np.int64),
                  "attention_mask": mask.cpu().numpy().astype(np.int64)}
        if tfidf:
            inputs.update(tfidf_ids=tfidf[0].cpu().numpy().astype(np.int64),
                          tfidf_values=tfidf[1].cpu().numpy().astype(np.float32))
        return torch.from_numpy(session.run(["logits"], inputs)[0]).to(ids.device)

    return ServedModel(logits_of, meta["config"]["chunk_pool"]), meta
