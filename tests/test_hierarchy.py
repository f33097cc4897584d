"""--label-hierarchy: one model over every level's labels, consistent predictions, per-level metrics, through train.py,
evaluate.py, predict.py and both export routes."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

import evaluate
import export
import predict
import train
from conftest import epochs_of, expect_error, tiny_train_args
from data.hierarchy import read_hierarchy
from engine.checkpoint import load_checkpoint
from engine.training.trainer import train_from_flags
from engine.config import parse_flags
from engine.settings import TRAIN_FIELDS

# the synthetic task's five labels are the finest level; "fig" has no example; "orchard" and "hedge" are the roots
PARENTS = {"apple": "pome", "banana": "soft", "cherry": "stone", "date": "stone", "elder": "soft", "fig": "soft",
           "pome": "orchard", "stone": "orchard", "soft": "hedge", "orchard": None, "hedge": None}
LEVELS = {"level_1": ["hedge", "orchard"], "level_2": ["pome", "soft", "stone"],
          "level_3": ["apple", "banana", "cherry", "date", "elder", "fig"]}
TEXTS = ["appleword1 filler2 filler3 dateword0", "filler7 filler8", "elderword2 bananaword0 filler1"]


@pytest.fixture(scope="module")
def hierarchy_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hierarchy") / "fruit.json"
    path.write_text(json.dumps(PARENTS))
    return str(path)


@pytest.fixture(scope="module")
def hierarchical_run(tiny_bert, synthetic_folder, hierarchy_file, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("hierarchical")
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "3", "--label-hierarchy",
                               hierarchy_file, "--features", "encoder", "--select-metric", "level_3_micro_f1"))
    return str(out)


def ancestors_kept(predicted: dict) -> bool:
    labels = {name for names in predicted.values() for name in names}
    return all(PARENTS[name] is None or PARENTS[name] in labels for name in labels)


def test_the_hierarchy_file_is_read_in_either_form_with_levels_from_the_roots(tmp_path):
    generic = tmp_path / "generic.json"
    generic.write_text(json.dumps(PARENTS))
    hierarchy = read_hierarchy(str(generic))
    assert {level: [hierarchy.label_names[j] for j in columns] for level, columns in hierarchy.levels.items()} == LEVELS
    eurovoc = tmp_path / "eurovoc.json"  # a name at two levels is two labels, each named with its level
    eurovoc.write_text(json.dumps({"catch quota": {"microthesaurus": "fisheries", "domain": "AGRICULTURE"},
                                   "fisheries": {"microthesaurus": "fisheries", "domain": "AGRICULTURE"},
                                   "farm": {"microthesaurus": "farming", "domain": "AGRICULTURE"}}))
    hierarchy = read_hierarchy(str(eurovoc))
    assert hierarchy.label_names == ["AGRICULTURE", "farming", "fisheries [level_2]", "catch quota", "farm",
                                     "fisheries [level_3]"]
    index = hierarchy.encode(["fisheries", "farm"], "test")  # a plain name at two levels: the finer one
    assert [hierarchy.label_names[j] for j in hierarchy.ancestors_closure(index)] == [
        "AGRICULTURE", "farming", "fisheries [level_2]", "farm", "fisheries [level_3]"]
    probs = np.array([[0.1, 0.2, 0.3, 0.9, 0.05, 0.4]])
    assert hierarchy.roll_up(probs).tolist() == [[0.9, 0.2, 0.9, 0.9, 0.05, 0.4]]


@pytest.mark.parametrize("content, fragment", [
    ('{"a": "b", "a": "c"}', "label 'a' has two parents ('b' and 'c')"),
    ('{"x": {"mt": "m", "domain": "D1"}, "y": {"mt": "m", "domain": "D2"}}',
     "label 'm' has two parents ('D1' and 'D2')"),
    ('{"a": "b", "b": "c", "c": "a"}', "is its own ancestor"),
    ('{"a": 3}', "label 'a': its parent must be a label name, null, or an object"),
    ('["a"]', "a hierarchy is a JSON object"),
    ("{not json", "not a JSON file"),
])
def test_a_bad_hierarchy_is_one_line_naming_the_label(content, fragment, tiny_bert, synthetic_folder, tmp_path,
                                                       capsys):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = tmp_path / "run"
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, out, "--label-hierarchy", str(path)), capsys,
                 fragment)
    assert not out.exists()


def test_a_label_of_the_data_missing_from_the_hierarchy_is_one_line_naming_it(tiny_bert, synthetic_folder, tmp_path,
                                                                              capsys):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({k: v for k, v in PARENTS.items() if k != "cherry"}))
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "run", "--label-hierarchy",
                                             str(path)), capsys, "label 'cherry' of the data is not in the hierarchy")


def test_a_levels_metric_needs_a_hierarchy_with_that_level(tiny_bert, synthetic_folder, hierarchy_file, tmp_path,
                                                           capsys):
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "a", "--select-metric",
                                             "level_1_micro_f1"), capsys, "a level's metric needs --label-hierarchy")
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "b", "--select-metric",
                                             "level_4_micro_f1", "--label-hierarchy", hierarchy_file), capsys,
                 "the hierarchy's levels are level_1, level_2, level_3")
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "c", "--select-metric",
                                             "level_1_roc_auc_macro"), capsys, "--select-metric level_1_roc_auc_macro:")


def test_one_model_learns_every_level_and_is_scored_per_level(hierarchical_run, capsys):
    records = epochs_of(hierarchical_run)
    last = records[-1]
    for level in LEVELS:
        assert 0 <= last[f"val_{level}_micro_f1"] <= 1 and f"val_{level}_precision_at_1" in last
        assert f"val_tuned_{level}_micro_f1" in last
    # every level's counts add up to the whole: its micro-F1 lies between the levels' (a mediant)
    levels_f1 = [record[f"val_{level}_micro_f1"] for record in records for level in LEVELS]
    for record in records:
        scores = [record[f"val_{level}_micro_f1"] for level in LEVELS]
        assert min(scores) - 1e-9 <= record["val_micro_f1"] <= max(scores) + 1e-9
    assert max(levels_f1) > 0.5  # the keywords are learnable
    state = load_checkpoint(os.path.join(hierarchical_run, "best.pt"))
    assert len(state["label_names"]) == 11 and state["hierarchy"]["source"].endswith("fruit.json")
    assert state["config"]["select_metric"] == "level_3_micro_f1"
    with open(os.path.join(hierarchical_run, "label_stats.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["label", "level", "train", "validation", "test"]
    fig = next(row for row in rows if row[0] == "fig")
    assert fig[1:3] == ["level_3", "0"]
    hedge = next(row for row in rows if row[0] == "hedge")  # a root has every example of its descendants
    banana_or_elder = [int(row[2]) for row in rows if row[0] in ("banana", "elder")]
    assert max(banana_or_elder) <= int(hedge[2]) <= sum(banana_or_elder)
    result = evaluate.main(["--ckpt", os.path.join(hierarchical_run, "best.pt"), "--split", "validation", "--output",
                            os.path.join(hierarchical_run, "..", "eval.json")])
    best = max(records, key=lambda r: r["val_level_3_micro_f1"])
    for level in LEVELS:
        assert result["metrics"][f"{level}_micro_f1"] == pytest.approx(best[f"val_{level}_micro_f1"], abs=1e-6)
    assert "level_2" in capsys.readouterr().out


def test_predictions_keep_every_label_with_its_ancestors_grouped_by_level(hierarchical_run, capsys):
    ckpt = os.path.join(hierarchical_run, "best.pt")
    records = predict.main(["--ckpt", ckpt, "--json", "--thresholds", "0.3", *TEXTS])
    for record in records:
        assert set(record["predicted"]) == set(LEVELS) and ancestors_kept(record["predicted"])
        probs = record["probabilities"]
        assert all(probs[PARENTS[name]] >= probs[name] for name in probs if PARENTS[name])
    [empty] = predict.main(["--ckpt", ckpt, "--json", "--thresholds", "1", "--min-labels", "1", TEXTS[1]])
    assert all(len(names) >= 1 for names in empty["predicted"].values()) and ancestors_kept(empty["predicted"])
    [top] = predict.main(["--ckpt", ckpt, "--json", "--thresholds", "0", "--top-k", "1", TEXTS[0]])
    assert len(top["predicted"]["level_3"]) == 1 and ancestors_kept(top["predicted"])
    capsys.readouterr()
    predict.main(["--ckpt", ckpt, "--thresholds", "0.3", TEXTS[0]])
    assert "level_1: " in capsys.readouterr().out
    expect_error(predict.main, ["--ckpt", ckpt, "--top-k", "1", "--min-labels", "2", "x"], capsys,
                 "--min-labels 2: more than --top-k 1")


@pytest.mark.slow
def test_a_hierarchical_run_resumes_bitwise(tiny_bert, synthetic_folder, hierarchy_file, hierarchical_run, tmp_path):
    out = tmp_path / "stopped"
    flags = tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "3", "--label-hierarchy", hierarchy_file,
                            "--features", "encoder", "--select-metric", "level_3_micro_f1")
    train_from_flags(parse_flags(TRAIN_FIELDS, flags),
                     after_epoch=lambda record: "stop" if record["epoch"] == 2 else None)
    assert len(epochs_of(out)) == 2
    train.main(["--resume", "auto", "--output-dir", str(out)])
    whole = load_checkpoint(os.path.join(hierarchical_run, "last.pt"))["model"]
    resumed = load_checkpoint(str(out / "last.pt"))["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hf", "onnx"])
def test_both_export_routes_carry_the_hierarchy_and_apply_it(fmt, hierarchical_run, tmp_path, capsys):
    if fmt == "onnx" and not importlib.util.find_spec("onnxruntime"):
        pytest.skip("ONNX needs the [export] extra (onnxruntime)")
    ckpt, folder = os.path.join(hierarchical_run, "best.pt"), str(tmp_path / fmt)
    export.main(["--ckpt", ckpt, "--out", folder, "--format", fmt])
    ours = predict.main(["--ckpt", ckpt, "--json", *TEXTS])
    served = predict.main(["--ckpt", folder, "--json", *TEXTS])
    for a, b in zip(ours, served):
        assert a["predicted"] == b["predicted"] and ancestors_kept(b["predicted"])
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) <= 1e-4
        assert all(b["probabilities"][PARENTS[n]] >= b["probabilities"][n] for n in b["probabilities"] if PARENTS[n])


def test_a_checkpoint_whose_hierarchy_was_edited_is_refused_in_one_line(hierarchical_run, tmp_path, capsys):
    state = torch.load(os.path.join(hierarchical_run, "best.pt"), weights_only=True)
    state["hierarchy"]["parents"][0] = 5  # a root made the child of a later label
    torch.save(state, tmp_path / "edited.pt")
    expect_error(predict.main, ["--ckpt", str(tmp_path / "edited.pt"), "x"], capsys,
                 "its label hierarchy is not a list of names with each parent's index before its own")
    state["hierarchy"]["parents"][0] = -1
    state["hierarchy"]["names"][0] = "shrub"
    torch.save(state, tmp_path / "renamed.pt")
    expect_error(evaluate.main, ["--ckpt", str(tmp_path / "renamed.pt"), "--split", "validation"], capsys,
                 "its label hierarchy does not name its labels")


def test_top_k_and_min_labels_apply_to_a_single_level_model_too(trained_run, capsys):
    ckpt = os.path.join(trained_run[0], "best.pt")
    [none] = predict.main(["--ckpt", ckpt, "--json", "--thresholds", "1", "--min-labels", "2", "filler7 filler8"])
    assert len(none["predicted"]) == 2
    probs = none["probabilities"]
    assert set(none["predicted"]) == set(sorted(probs, key=probs.get)[-2:])
    [one] = predict.main(["--ckpt", ckpt, "--json", "--thresholds", "0", "--top-k", "1", TEXTS[0]])
    assert one["predicted"] == [max(one["probabilities"], key=one["probabilities"].get)]
