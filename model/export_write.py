"""A trained classifier written in the forms others serve: a Hugging Face folder (safetensors, id2label,
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

from data.tfidf import FILE_NAME as TFIDF_FILE
from data.tfidf import TfidfVocabulary, TfidfWeights
from model.classifier import build_from_checkpoint
from model.encoders import supported_attention
from model.export_format import (AGREEMENT, FORMAT_VERSION, METADATA_KEY, ONNX_FILE, REMOTE_CODE_FILE, ExportError,
                                 write_manifest)
from model.export_read import load_exported

TANH_SCALE = 1e-4
HF_MODELING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_modeling.py")
FUSED_HEAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fused_head.py")  # hf_modeling.py imports it
TFIDF_CODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tfidf.py")


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
    fused = classifier.fused
    config = MultiLabelEncoderConfig(encoder_config=state["encoder_config"], pooling=state["config"]["pooling"],
                                     tfidf_size=None if fused is None else fused.tfidf_size,
                                     tfidf_kept=0 if fused is None else len(fused.tfidf_weights),
                                     chunk_pool=state["config"]["chunk_pool"],
                                     **label_maps(state["label_names"]), **{METADATA_KEY: metadata(state)})
    config.auto_map = {"AutoConfig": f"{module}.MultiLabelEncoderConfig",
                       "AutoModelForSequenceClassification": f"{module}.MultiLabelEncoderClassifier"}
    model = MultiLabelEncoderClassifier(config)
    model.load_state_dict(classifier.state_dict())
    return model.eval()


class ProbabilitiesAndLogits(nn.Module):
    """The graph ONNX gets: a window's sigmoid probabilities, and its logits (which chunked documents pool). With a
    fused head it reads `tfidf_scores` too, the window's document's TF-IDF vector times the head's sparse TF-IDF
    block (data/tfidf.py's TfidfWeights computes them from tfidf_weights.npz): ONNX has no sparse product."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, tfidf_scores=None):
        if tfidf_scores is None:
            logits = self.classifier(input_ids, attention_mask)
        else:
            fused = self.classifier.fused
            embedding = self.classifier.window_embedding(input_ids, attention_mask)
            logits = fused.embedding_logits(embedding) + tfidf_scores + fused.bias
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
        example = (ids, mask)
        if fused:
            head = classifier.fused
            weights = TfidfWeights(head.tfidf_offsets, head.tfidf_labels, head.tfidf_weights, head.num_labels)
            weights.save(folder)
            example = (ids, mask, torch.from_numpy(weights.scores(tfidf[0].numpy(), tfidf[1].numpy())))
        write_onnx(classifier, state, os.path.join(folder, ONNX_FILE), example)
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
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    names = ["input_ids", "attention_mask", "tfidf_scores"][:len(example)]
    shapes = {name: {0: batch} if name == "tfidf_scores" else {0: batch, 1: length} for name in names}
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


