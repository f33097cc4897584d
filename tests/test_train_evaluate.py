"""End to end through the CLIs' entry points: train a tiny BERT, pick best.pt, evaluate it again."""
import json
import os
import shutil

import pytest
import torch

import evaluate
import train


def test_tiny_bert_learns_the_synthetic_task(trained_run):
    _, summary, epochs = trained_run
    assert summary["best_metric"] > 0.9
    assert len(epochs) == 6
    assert epochs[-1]["val_micro_f1"] > epochs[0]["val_micro_f1"]


def test_run_folder_holds_config_checkpoints_and_events(trained_run):
    out, _, _ = trained_run
    names = os.listdir(out)
    assert {"config.json", "metrics.jsonl", "best.pt", "last.pt"} <= set(names)
    assert any(name.startswith("events.out.tfevents") for name in names)
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 3e-3 and config["epochs"] == 6 and config["threshold"] == 0.5
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["config"] == config
    assert state["label_names"] == ["apple", "banana", "cherry", "date", "elder"]
    assert not any(key.startswith("module.") for key in state["model"])


def read_scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_best_checkpoint_is_the_epoch_with_the_best_logged_micro_f1(trained_run):
    out, _, epochs = trained_run
    logged = read_scalars(out, "val/micro_f1")
    assert [step for step, _ in logged] == [r["step"] for r in epochs]
    best_step, best_value = max(logged, key=lambda sv: sv[1])
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["progress"]["step"] == best_step
    assert best["metrics"]["micro_f1"] == pytest.approx(best_value, abs=1e-6)
    for tag in ("train/loss", "train/lr", "val/loss", "val/macro_f1", "val/roc_auc_micro", "val/subset_accuracy"):
        assert read_scalars(out, tag), tag


def test_evaluate_reproduces_the_logged_validation_metrics(trained_run, tmp_path):
    out, _, epochs = trained_run
    best = torch.load(out / "best.pt", weights_only=True)
    logged = next(r for r in epochs if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation",
                            "--output", str(tmp_path / "m.json")])
    for key, value in result["metrics"].items():
        if isinstance(value, float):
            assert value == logged[f"val_{key}"], key
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["micro_f1"] == logged["val_micro_f1"]


def test_evaluate_on_the_test_split_and_on_a_user_file(trained_run, synthetic_folder, capsys):
    out, _, _ = trained_run
    result = evaluate.main(["--ckpt", str(out / "best.pt")])
    assert result["examples"] == 120 and result["metrics"]["micro_f1"] > 0.85
    assert os.path.exists(out / "eval-best-test.json")
    user_file = os.path.join(synthetic_folder, "test.tsv")
    again = evaluate.main(["--ckpt", str(out / "best.pt"), "--data", user_file, "--output", str(out / "u.json")])
    assert again["metrics"] == result["metrics"]
    report = capsys.readouterr().out
    assert "micro_f1" in report and "cherry" in report


@pytest.mark.slow
@pytest.mark.parametrize("frozen", ["word", "all"])
def test_frozen_embeddings_stay_as_pretrained_and_the_rest_trains(tiny_bert, synthetic_folder, tmp_path, frozen):
    from transformers import BertModel

    from conftest import tiny_train_args

    train.main(tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "run", "--epochs", "1",
                               "--freeze-embeddings", frozen))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    pretrained = BertModel.from_pretrained(tiny_bert).state_dict()
    for name, weight in pretrained.items():
        if name.startswith("pooler."):  # the classifier drops BERT's pooler
            continue
        kept = torch.equal(state["model"][f"encoder.{name}"], weight)
        assert kept == (name.startswith("embeddings.") and (frozen == "all" or "word_embeddings" in name)), name


@pytest.mark.slow
def test_attention_dropout_reaches_the_encoder_and_its_checkpoint(tiny_bert, synthetic_folder, tmp_path):
    from conftest import tiny_train_args
    from model.classifier import build_from_checkpoint

    train.main(tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "run", "--epochs", "1",
                               "--attention-dropout", "0"))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["config"]["attention_dropout"] == 0.0
    assert state["encoder_config"]["attention_probs_dropout_prob"] == 0.0
    model, _ = build_from_checkpoint(state)
    assert all(layer.attention.self.dropout.p == 0.0 for layer in model.encoder.encoder.layer)


@pytest.mark.parametrize("trained_embeddings", [True, False])
def test_a_run_saved_with_the_older_freeze_flag_resumes_with_the_same_choice(trained_run, tmp_path,
                                                                             trained_embeddings):
    from engine.checkpoint import save_checkpoint
    from engine.config import parse_flags
    from engine.settings import TRAIN_FIELDS
    from engine.training.run_config import resolve_run

    state = torch.load(trained_run[0] / "last.pt", weights_only=True)
    del state["format"], state["config"]["freeze_embeddings"]  # as format 1 wrote it
    state["config"]["freeze_word_embeddings"] = not trained_embeddings
    save_checkpoint(str(tmp_path / "last.pt"), state)
    config, _, _ = resolve_run(parse_flags(TRAIN_FIELDS, ["--resume", str(tmp_path / "last.pt")]))
    assert config["freeze_embeddings"] == ("none" if trained_embeddings else "word")


def test_a_run_saved_before_the_rare_label_defaults_resumes_with_its_own_choices(trained_run, tmp_path):
    """Square-root positive weights and the pooled threshold of rare labels came later: a run without those
    keys in its config continues as it began (no weights, the global threshold)."""
    from engine.checkpoint import save_checkpoint
    from engine.config import parse_flags
    from engine.settings import TRAIN_FIELDS
    from engine.training.run_config import resolve_run

    state = torch.load(trained_run[0] / "last.pt", weights_only=True)
    del state["format"]  # as format 1 wrote it
    for key in ("pos_weight", "tune_fallback"):
        del state["config"][key]
    save_checkpoint(str(tmp_path / "last.pt"), state)
    config, _, _ = resolve_run(parse_flags(TRAIN_FIELDS, ["--resume", str(tmp_path / "last.pt")]))
    assert (config["pos_weight"], config["tune_fallback"]) == ("none", "global")
    fresh, _, _ = resolve_run(parse_flags(TRAIN_FIELDS, ["--output-dir", str(tmp_path / "new")]))
    assert (fresh["pos_weight"], fresh["tune_fallback"]) == ("sqrt", "pooled")


def test_each_evaluated_source_gets_its_own_result_file(trained_run, synthetic_folder, tmp_path):
    out, _, _ = trained_run
    for name in ("first", "second"):
        shutil.copy(os.path.join(synthetic_folder, "test.tsv"), tmp_path / f"{name}.tsv")
        evaluate.main(["--ckpt", str(out / "best.pt"), "--data", str(tmp_path / f"{name}.tsv")])
    assert os.path.exists(out / "eval-best-first.json") and os.path.exists(out / "eval-best-second.json")
    evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation"])
    assert os.path.exists(out / "eval-best-validation.json")


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for flag in ("--lr LR encoder learning rate (peak) (default: 0.0001)", "--batch-size BATCH_SIZE per device (default: 16)",
                 "--split-seed SPLIT_SEED seed of that carve (default: 0)"):
        assert flag in shown, flag


def test_no_generic_top_level_name_is_installed(tmp_path):
    """Outside the repository, `import evaluate` (Hugging Face's library) or `import data` must not find ours."""
    import subprocess
    import sys

    from conftest import ROOT

    probe = ("import importlib.util\n"
             "for name in ('data', 'model', 'engine', 'train', 'evaluate', 'predict'):\n"
             "    spec = importlib.util.find_spec(name)\n"
             "    print(name, spec.origin if spec and spec.origin else '-')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert ROOT not in done.stdout, done.stdout


def test_help_and_a_misspelt_flag_answer_before_torch_is_imported_in_each_cli():
    import subprocess
    import sys

    from conftest import ROOT

    for cli in ("train", "evaluate", "predict"):
        probe = (f"import sys\nimport {cli}\nfor argv in (['--help'], ['--epohcs', '3']):\n"
                 f"    try:\n        {cli}.main(argv)\n    except SystemExit as e:\n        print(argv[0], e.code)\n"
                 "print('torch imported:', 'torch' in sys.modules, 'transformers imported:', 'transformers' in sys.modules)\n")
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
        assert done.stdout.splitlines()[-3:] == ["--help 0", "--epohcs 2",
                                                 "torch imported: False transformers imported: False"], cli
        assert "unrecognized arguments: --epohcs 3" in done.stderr or "the following arguments are required" in done.stderr


def test_metrics_logged_under_their_former_names_are_read_under_todays(trained_run, tmp_path):
    from engine.checkpoint import load_checkpoint, save_checkpoint
    from engine.config import parse_flags
    from engine.settings import TRAIN_FIELDS
    from engine.training.run_config import resolve_run
    from engine.training.run_folder import read_metrics

    out, _, epochs = trained_run
    state = torch.load(out / "last.pt", weights_only=True)
    former = {"precision_at_1": "P@1", "ndcg_at_3": "nDCG@3", "mean_r_precision": "mRP"}
    state["metrics"] = {former.get(k, k): v for k, v in state["metrics"].items()}
    state["config"]["select_metric"] = "mRP"
    del state["format"]  # as format 1 wrote it
    save_checkpoint(str(tmp_path / "last.pt"), state)
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for record in epochs:
            f.write(json.dumps({k.replace("val_precision_at_1", "val_P@1").replace("val_mean_r_precision", "val_mRP"): v
                                for k, v in record.items()}) + "\n")
    loaded = load_checkpoint(str(tmp_path / "last.pt"))
    assert loaded["config"]["select_metric"] == "mean_r_precision"
    assert {"precision_at_1", "ndcg_at_3", "mean_r_precision"} <= set(loaded["metrics"])
    assert not {"P@1", "nDCG@3", "mRP"} & set(loaded["metrics"])
    assert read_metrics(str(tmp_path), len(epochs)) == epochs
    config, _, _ = resolve_run(parse_flags(TRAIN_FIELDS, ["--resume", str(tmp_path / "last.pt"), "--select-metric", "mRP"]))
    assert config["select_metric"] == "mean_r_precision"  # the former name on the command line is the same metric
    config, _, _ = resolve_run(parse_flags(TRAIN_FIELDS, ["--select-metric", "P@5", "--output-dir", str(tmp_path / "new")]))
    assert config["select_metric"] == "precision_at_5"


@pytest.mark.slow
def test_one_switch_turns_every_cpu_fast_path_off(tiny_bert, synthetic_folder, tmp_path):
    from conftest import tiny_train_args
    from engine.amp import resolve_amp
    from model import cpu_fast
    from model.classifier import attention_impl, build_model

    out = tmp_path / "run"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "1", "--fast-paths", "off", "--amp", "auto"))
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["config"]["fast_paths"] == "off" and state["config"]["attention_impl"] == "sdpa"
    assert state["config"]["amp_dtype"] == "off"
    assert resolve_amp("auto", torch.device("cpu"), fast_paths=False) is None
    for switch, fast in (("off", False), ("on", True)):
        model = build_model({**state["config"], "fast_paths": switch,
                             "attention_impl": "sdpa" if switch == "off" else cpu_fast.PLAIN_OR_SDPA}, 5)
        kinds = {type(m) for m in model.modules()}
        assert (cpu_fast.Dropout in kinds) == fast and (torch.nn.Dropout in kinds) != fast
        assert bool(model.encoder.embeddings._forward_hooks) == fast
        assert attention_impl(model) == ("plain_or_sdpa" if fast else "sdpa")
    result = evaluate.main(["--ckpt", str(out / "last.pt"), "--split", "validation", "--output", str(tmp_path / "m.json")])
    assert result["metrics"]["micro_f1"] == pytest.approx(state["metrics"]["micro_f1"], abs=1e-6)
