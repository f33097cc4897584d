"""A trained model ready to turn examples into label probabilities, from a checkpoint alone or from a folder
export.py wrote (`load_predictor`): what evaluate.py and predict.py serve with."""
import os

import torch

from data import build_loader
from data.errors import InputError
from data.examples import Examples
from data.hierarchy import Hierarchy
from data.tfidf import TfidfVocabulary
from data.tokenized import LongDoc, tokenize
from engine.amp import inference_dtype, resolve_amp
from engine.checkpoint import CheckpointError, load_checkpoint, served_problem
from engine.compiling import compile_plan, compiled_module
from engine.config import ConfigError, config_problem
from engine.formats import upgrade_export
from engine.losses import build_loss
from engine.predictions import collect_probabilities
from model import cpu_fast
from model.classifier import build_from_checkpoint
from model.encoders import position_limit


class Predictor:
    """A model, its tokenizer and what it serves by: `state` holds the config, label names, tuned thresholds,
    TF-IDF vocabulary and hierarchy (and, from a checkpoint, everything else it holds). `loss_fn` is built on
    first use (evaluate.py reports the loss of a checkpoint; an export has none: its loss reads 0)."""

    def __init__(self, model, tokenizer, state: dict, device: torch.device, amp_dtype, batch_size: int | None):
        self.model, self.tokenizer, self.state, self.device, self.amp_dtype = model, tokenizer, state, device, amp_dtype
        self.config, self.label_names = state["config"], state["label_names"]
        self.hierarchy = Hierarchy.from_state(state.get("hierarchy"))
        self.batch_size = batch_size or self.config["eval_batch_size"]

    def loss_fn(self):
        """The training run's loss, with its label weights (None for an export, which carries no loss)."""
        if "model" not in self.state:
            return None
        weights = (self.state.get(key) for key in ("pos_weight", "label_prior"))
        return build_loss(self.config, *(t.to(self.device) if t is not None else None for t in weights))

    def probabilities(self, examples: Examples, cache_dir=None, with_loss: bool = False) -> tuple:
        """(probabilities, multi-hot gold labels, mean loss or 0) in the order of `examples`; with a hierarchy, the
        probabilities rolled up (data/hierarchy.py)."""
        tfidf = self.state.get("tfidf")
        tokenized = tokenize(examples, self.tokenizer, self.config["max_length"], len(self.label_names), cache_dir,
                             LongDoc.from_config(self.config), TfidfVocabulary.from_state(tfidf) if tfidf else None)
        loader = build_loader(tokenized, self.batch_size, self.tokenizer.pad_token_id, False, device=self.device,
                              compiled=self.config["compiled"] != "off", max_length=self.config["max_length"])
        return collect_probabilities(self.model, loader, self.device, self.amp_dtype,
                                     self.loss_fn() if with_loss else None, self.hierarchy)


def load_predictor(path: str, device: str = "cpu", amp: str | None = None, batch_size: int | None = None,
                   compile: bool = False) -> Predictor:
    """The model of a checkpoint file or of an exported folder. `compile`: on a GPU, as the run's --compile resolves
    there (evaluate.py; predict.py's few texts would spend longer compiling than predicting, and on a CPU the eager
    fast paths are faster); `amp`: the autocast dtype, by default the one the run validated in."""
    device = torch.device(device)
    if os.path.isdir(path):
        return predictor_from_export(path, device, batch_size)
    return predictor_from_checkpoint(path, device, amp, batch_size, compile)


def predictor_from_checkpoint(path: str, device: torch.device, amp: str | None, batch_size: int | None,
                              compile: bool) -> Predictor:
    state = load_checkpoint(path)
    plan = compile_plan(state["config"], device) if compile and device.type == "cuda" else "off"
    state["config"] = {**state["config"], "compiled": plan}  # this evaluation's, not the training's
    config = state["config"]
    cpu_fast.prepare(config, device)
    amp_dtype = (resolve_amp(amp, device, cpu_fast.enabled(config)) if amp
                 else inference_dtype(config["amp_dtype"], device))
    try:
        model, tokenizer = build_from_checkpoint(state)
    except InputError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as e:
        raise CheckpointError(f"{path}: its weights, encoder config or tokenizer do not fit together "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    model.to(device)
    if plan != "off":
        model = compiled_module(model, plan)
    return Predictor(model, tokenizer, state, device, amp_dtype, batch_size)


def predictor_from_export(folder: str, device: torch.device, batch_size: int | None) -> Predictor:
    """An export's model in fp32, its metadata upgraded to today's format (engine/formats.py) and checked as a
    checkpoint's is."""
    from model.export_format import ExportError
    from model.export_read import load_exported

    model, tokenizer, meta = load_exported(folder, str(device))
    try:
        meta, _ = upgrade_export(meta)
    except ConfigError as e:
        raise ExportError(f"{folder}: its run config is not usable: {e}") from None
    hf_config = getattr(getattr(model, "module", None), "config", None)
    positions = position_limit(hf_config.to_dict()) if hf_config is not None else None
    limit = min(tokenizer.model_max_length, positions or tokenizer.model_max_length)
    state = {"config": meta["config"], "label_names": meta["label_names"], "thresholds": meta["thresholds"],
             "tfidf": meta.get("tfidf"), "hierarchy": meta.get("hierarchy")}
    if model.tfidf_weights is not None:
        state["model"] = {f"fused.{key}": value for key, value in model.tfidf_weights.items()}
    problem = config_problem(state["config"]) or served_problem(state, limit)
    if problem:
        raise ExportError(f"{folder}: not a usable export: {problem}")
    return Predictor(model, tokenizer, state, device, None, batch_size)
