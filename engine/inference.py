"""What evaluate.py and predict.py share: a model from a checkpoint alone, and predictions as records."""
import os

import numpy as np
import torch

from data import Examples, LongDoc, build_loader, tokenize
from data.errors import InputError
from data.hierarchy import Hierarchy, hierarchy_problem
from data.tfidf import TfidfVocabulary
from engine.amp import inference_dtype, resolve_amp
from engine.checkpoint import CheckpointError, labels_problem, load_checkpoint, tfidf_problem
from engine.config import ConfigError, config_problem, upgrade
from engine.loop import collect_probabilities
from engine.state import compile_plan, compiled_module
from engine.losses import build_loss
from engine.metrics import binarize
from model import build_from_checkpoint, cpu_fast, position_limit


class Predictor:
    """A checkpoint's model and tokenizer, ready to turn examples into label probabilities; or, for a folder
    export.py wrote, the exported model (fp32, no loss: `probabilities` gives a loss of 0)."""

    def __init__(self, ckpt: str, device: str = "cpu", amp: str | None = None, batch_size: int | None = None,
                 compile: bool = False):
        """`compile`: on a GPU, as the run's --compile resolves there (evaluate.py; predict.py's few texts would
        spend longer compiling than predicting, and on a CPU the eager fast paths are faster)."""
        self.device = torch.device(device)
        if os.path.isdir(ckpt):
            self.load_export(ckpt, batch_size)
            return
        self.state = load_checkpoint(ckpt)
        plan = compile_plan(self.state["config"], self.device) if compile and self.device.type == "cuda" else "off"
        self.state["config"] = {**self.state["config"], "compiled": plan}  # this evaluation's, not the training's
        self.config, self.label_names = self.state["config"], self.state["label_names"]
        self.hierarchy = Hierarchy.from_state(self.state.get("hierarchy"))
        if cpu_fast.enabled(self.config):
            cpu_fast.keep_freed_memory(self.device)
        self.amp_dtype = (resolve_amp(amp, self.device, cpu_fast.enabled(self.config)) if amp
                          else inference_dtype(self.config["amp_dtype"], self.device))
        try:
            self.model, self.tokenizer = build_from_checkpoint(self.state)
        except InputError:
            raise
        except (RuntimeError, ValueError, KeyError, TypeError, OSError) as e:
            raise CheckpointError(f"{ckpt}: its weights, encoder config or tokenizer do not fit together "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        self.model.to(self.device)
        if plan != "off":
            self.model = compiled_module(self.model, plan)
        self.batch_size = batch_size or self.config["eval_batch_size"]
        pos_weight, prior = self.state.get("pos_weight"), self.state.get("label_prior")
        self.loss_fn = build_loss(self.config, *(t.to(self.device) if t is not None else None
                                                 for t in (pos_weight, prior)))

    def load_export(self, folder: str, batch_size: int | None) -> None:
        from model.exported import ExportError, load_exported

        self.model, self.tokenizer, meta = load_exported(folder, str(self.device))
        try:
            config, _ = upgrade(meta["config"])
        except ConfigError as e:
            raise ExportError(f"{folder}: its run config is not usable: {e}") from None
        self.state = {"config": config, "label_names": meta["label_names"], "thresholds": meta["thresholds"],
                      "tfidf": meta.get("tfidf"), "hierarchy": meta.get("hierarchy")}
        problem = (config_problem(config) or labels_problem(meta["label_names"], meta["thresholds"])
                   or tfidf_problem(meta.get("tfidf"), config["features"], None, len(meta["label_names"]))
                   or hierarchy_problem(meta.get("hierarchy"), meta["label_names"]))
        if problem:
            raise ExportError(f"{folder}: not a usable export: {problem}")
        hf_config = getattr(getattr(self.model, "module", None), "config", None)
        positions = position_limit(hf_config.to_dict()) if hf_config is not None else None
        limit = min(self.tokenizer.model_max_length, positions or self.tokenizer.model_max_length)
        if config["max_length"] > limit:
            raise ExportError(f"{folder}: not a usable export: its max_length {config['max_length']} is beyond the "
                              f"encoder's {limit} positions")
        self.config, self.label_names = config, meta["label_names"]
        self.hierarchy = Hierarchy.from_state(meta.get("hierarchy"))
        self.amp_dtype, self.loss_fn = None, None
        self.batch_size = batch_size or config["eval_batch_size"]

    def probabilities(self, examples: Examples, cache_dir=None) -> tuple[np.ndarray, np.ndarray, float]:
        """(probabilities, multi-hot gold labels, mean loss) in the order of `examples`; with a hierarchy, the
        probabilities rolled up (data/hierarchy.py)."""
        tfidf = self.state.get("tfidf")
        tokenized = tokenize(examples, self.tokenizer, self.config["max_length"], len(self.label_names), cache_dir,
                             LongDoc.from_config(self.config), TfidfVocabulary.from_state(tfidf) if tfidf else None)
        loader = build_loader(tokenized, self.batch_size, self.tokenizer.pad_token_id, False, device=self.device,
                              compiled=self.config["compiled"] != "off", max_length=self.config["max_length"])
        return collect_probabilities(self.model, loader, self.device, self.amp_dtype, self.loss_fn, self.hierarchy)


def decide(probs: np.ndarray, thresholds, hierarchy=None, top_k: int | None = None,
           min_labels: int | None = None) -> np.ndarray:
    """0/1 decisions: at the thresholds; then, in each level (all labels without a hierarchy), at most the `top_k`
    likeliest of those and at least the `min_labels` likeliest of all; then each predicted label's ancestors (which
    may pass `top_k` at a coarser level: a label is never predicted without them)."""
    predicted = binarize(probs, thresholds)
    levels = hierarchy.levels.values() if hierarchy is not None else [np.arange(probs.shape[1])]
    for columns in levels:
        rank = np.empty((len(probs), len(columns)), dtype=np.int64)  # 0 for each document's likeliest label here
        np.put_along_axis(rank, np.argsort(-probs[:, columns], axis=1, kind="stable"), np.arange(len(columns))[None], 1)
        part = predicted[:, columns]
        if top_k is not None:
            part &= rank < top_k
        if min_labels is not None:
            part |= rank < min_labels
        predicted[:, columns] = part
    return predicted if hierarchy is None else hierarchy.roll_up(predicted)


def prediction_records(ids, probs, thresholds, label_names, gold=None, texts=None, hierarchy=None, top_k=None,
                       min_labels=None):
    """One JSON-ready dict per example: id, (text), (gold labels), predicted labels (with a hierarchy, a list per
    level: `{"level_1": [...], ...}`), probabilities."""
    predicted = decide(probs, thresholds, hierarchy, top_k, min_labels)
    levels = {level: set(columns.tolist()) for level, columns in hierarchy.levels.items()} if hierarchy else None
    for i, example_id in enumerate(ids):
        record = {"id": example_id}
        if texts is not None:
            record["text"] = texts[i]
        if gold is not None:
            record["gold"] = [label_names[j] for j in gold[i]]
        chosen = np.flatnonzero(predicted[i])
        record["predicted"] = ([label_names[j] for j in chosen] if levels is None else
                               {level: [label_names[j] for j in chosen if j in columns]
                                for level, columns in levels.items()})
        record["probabilities"] = {name: round(float(p), 6) for name, p in zip(label_names, probs[i])}
        yield record
