"""A run's data: its examples and labels read and checked (before the config is resolved for the machine), then the
token ids, TF-IDF vectors and the loaders of training and validation."""
from typing import NamedTuple

from data import build_loader, load_examples
from data.errors import DataError
from data.hierarchy import Hierarchy, read_hierarchy
from data.tfidf import TfidfVocabulary
from data.tokenized import LongDoc, tokenize
from engine.config import check_against_labels
from engine.training.head_fit import fit_vocabulary


class RunExamples(NamedTuple):
    splits: dict  # split name -> Examples (train and validation at least)
    label_names: list
    hierarchy: Hierarchy | None  # --label-hierarchy: every level's labels in one set (data/hierarchy.py)


class RunData(NamedTuple):
    splits: dict
    label_names: list
    tokenizer: object
    train_loader: object
    val_loader: object
    fingerprints: dict  # of the train and validation examples (Examples.fingerprint), computed once
    tfidf: TfidfVocabulary | None = None  # --features both: the training texts' vocabulary
    fit_loader: object = None  # with the fused head: the training documents in order, for its fit
    train_tfidf: tuple | None = None  # with the fused head: the training documents' TF-IDF vectors (CSR arrays)
    hierarchy: Hierarchy | None = None


def read_run_examples(cfg: dict, resume: dict | None, log=print) -> RunExamples:
    """The run's splits and labels (a resumed run's own labels and hierarchy), checked against --select-metric;
    with --train-on-validation the validation examples join the training ones."""
    hierarchy = Hierarchy.from_state(resume.get("hierarchy") if resume else None) or (
        read_hierarchy(cfg["label_hierarchy"]) if cfg["label_hierarchy"] else None)
    splits, label_names = load_examples(
        cfg["data"], cfg["data_config"], cfg["text_column"], cfg["label_column"], cfg["label_separator"],
        label_names=resume["label_names"] if resume else None, val_fraction=cfg["val_fraction"],
        split_seed=cfg["split_seed"], max_train_samples=cfg["max_train_samples"],
        max_eval_samples=cfg["max_eval_samples"], log=log, hierarchy=hierarchy)
    missing = [split for split in ("train", "validation") if split not in splits]
    if missing:
        carve = (f"; --val-fraction {cfg['val_fraction']} carves none from train"
                 if missing == ["validation"] and not cfg["val_fraction"] else "")
        raise DataError(f"--data {cfg['data']}: training needs a {' and a '.join(missing)} split (found: "
                        f"{', '.join(splits) or 'none'}){carve}")
    check_against_labels(cfg, len(label_names), splits["validation"].labels, hierarchy.levels if hierarchy else None)
    if cfg["train_on_validation"]:
        splits["train"] = splits["train"].joined(splits["validation"])
        log(f"--train-on-validation: training on {len(splits['train'])} examples, the validation split's included")
    return RunExamples(splits, label_names, hierarchy)


def build_data(cfg: dict, examples: RunExamples, tokenizer, device, rank: int = 0, world_size: int = 1, log=print,
               tfidf_state: dict | None = None) -> RunData:
    """The loaders of a config resolved for its machine (engine/training/run_config.py: their padding follows its
    compile mode); with --features both, the TF-IDF vocabulary (a resumed run's own, `tfidf_state`, else fitted on
    the training texts), every document's vector, and a loader of the training documents in order for the fused
    head's fit."""
    splits, label_names = examples.splits, examples.label_names
    cache, long_doc = cfg["cache_dir"] or None, LongDoc.from_config(cfg)
    tfidf = None
    if cfg["features"] != "encoder":
        tfidf = TfidfVocabulary.from_state(tfidf_state) if tfidf_state else fit_vocabulary(
            splits["train"].texts, cfg["tfidf_terms"], log)
    train_set, val_set = (tokenize(splits[s], tokenizer, cfg["max_length"], len(label_names), cache, long_doc, tfidf)
                          for s in ("train", "validation"))
    if long_doc.mode == "chunk":
        log("windows per document: " + ", ".join(
            f"{name} {len(ex.window_lengths) / max(1, len(ex)):.2f} on average, at most {ex.max_windows()}"
            for name, ex in (("train", train_set), ("validation", val_set))))

    def loader(dataset, batch_size, shuffle):
        return build_loader(dataset, batch_size, tokenizer.pad_token_id, shuffle, cfg["seed"] if shuffle else 0, device,
                            cfg["workers"],
                            rank, world_size, cfg["compiled"] != "off", cfg["max_length"])

    train_docs = train_set.without_tfidf()  # training and the fit read no TF-IDF rows per batch (train_set.tfidf)
    train_loader = loader(train_docs, cfg["batch_size"], True)
    val_loader = loader(val_set, cfg["eval_batch_size"], False)
    fit_loader = None if tfidf is None else loader(train_docs, cfg["eval_batch_size"], False)
    fingerprints = {split: splits[split].fingerprint() for split in ("train", "validation")}
    return RunData(splits, label_names, tokenizer, train_loader, val_loader, fingerprints, tfidf, fit_loader,
                   train_set.tfidf, examples.hierarchy)


def refuse_changed_data(saved: dict | None, data: RunData, checkpoint: str) -> None:
    """A resumed run must read the examples the run began with (checkpoints from before fingerprints: not checked)."""
    for split, expected in (saved or {}).items():
        if split in data.fingerprints and data.fingerprints[split] != expected:
            raise DataError(f"--resume {checkpoint}: the {split} split read now ({len(data.splits[split])} examples) "
                            "is not the one the run was trained on (the data changed); start a new run on the new data")
