"""The run's config: one field table gives the CLI, the defaults a notebook gets, the checks, the resume rules and
the upgrade of older checkpoints."""
import numpy as np
import pytest
import torch

from engine.config import ConfigError, make_config, parse_flags, with_defaults
from engine.formats import config_1_to_2
from engine.settings import EVALUATE_FIELDS, FIELDS, PREDICT_FIELDS, RESUME_RULES, TRAIN_FIELDS
from engine.training.run_config import resolve_run


def test_every_setting_has_a_resume_rule_and_every_flag_is_a_setting():
    for f in TRAIN_FIELDS:
        assert f.resume in RESUME_RULES, f.name
        assert f.help and f.group or f.resume == "recorded", f.name
    flags = [f for f in TRAIN_FIELDS if f.resume != "recorded"]
    assert {f.resume for f in flags} == {"fixed", "applied", "free"}
    for f in flags:  # each flag parses to its own setting
        value = [] if f.kind is bool else [str(f.choices[0] if f.choices else 1)]
        assert set(parse_flags(TRAIN_FIELDS, [f.flag, *value])) == {f.name}
    for f in TRAIN_FIELDS:
        if f.resume == "recorded":  # what the run resolves has no flag
            with pytest.raises(SystemExit):
                parse_flags(TRAIN_FIELDS, [f.flag, "x"])
    for fields in (EVALUATE_FIELDS, PREDICT_FIELDS):
        assert len({f.name for f in fields}) == len(fields)


def test_a_notebook_config_has_the_command_lines_defaults(tiny_bert):
    from model.classifier import build_model

    assert make_config() == with_defaults(TRAIN_FIELDS, parse_flags(TRAIN_FIELDS, []))
    config = make_config(model=tiny_bert)
    assert (config["long_doc"], config["freeze_embeddings"], config["pos_weight"]) == ("truncate", "word", "sqrt")
    model = build_model(config, 3)
    assert not model.encoder.get_input_embeddings().weight.requires_grad  # --freeze-embeddings word, as train.py
    with pytest.raises(ConfigError, match="'learning_rate': not a setting"):
        make_config(learning_rate=1e-3)
    with pytest.raises(ConfigError, match="--pooling max: choose one of mean, cls"):
        make_config(pooling="max")
    with pytest.raises(ConfigError, match="--epochs 2.5: must be a whole number"):
        make_config(epochs=2.5)


def upgrade(config: dict) -> tuple[dict, dict]:
    filled = {}
    return config_1_to_2(config, filled), filled


def test_a_format_1_config_gets_what_it_lacks_and_says_so(trained_run):
    saved = torch.load(trained_run[0] / "last.pt", weights_only=True)["config"]
    today, filled = upgrade(saved)
    assert today == saved and filled == {}
    older = {k: v for k, v in saved.items() if k not in ("long_doc", "stride", "tune_fallback", "resumes",
                                                          "freeze_embeddings")}
    older["freeze_word_embeddings"] = True
    today, filled = upgrade(older)
    assert filled == {"long_doc": "truncate", "stride": None, "tune_fallback": "global", "resumes": [],
                      "freeze_embeddings": "word"}
    assert set(today) == set(FIELDS) and "freeze_word_embeddings" not in today
    with pytest.raises(ConfigError, match="its config has no 'model'"):
        upgrade({k: v for k, v in saved.items() if k != "model"})
    switched = {k: v for k, v in saved.items() if k != "compiled"}  # --compile was a switch in format 1
    for was, mode, now, compiled in ((True, "reduce-overhead", "on", "reduce-overhead"), (False, "default", "off", "off")):
        today, filled = upgrade({**switched, "compile": was, "compile_mode": mode})
        assert (today["compile"], today["compiled"]) == (now, compiled) and filled == {"compile": now, "compiled": compiled}


def test_compile_auto_compiles_on_a_gpu_only_and_not_chunked_windows():
    from engine.compiling import compile_plan

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    config = make_config()
    assert (config["compile"], config["compile_mode"]) == ("auto", "auto")
    assert compile_plan(config, cpu) == "off" and compile_plan(config, cuda) == "reduce-overhead"
    assert compile_plan({**config, "long_doc": "chunk"}, cuda) == "off"  # windows per batch vary: unbounded shapes
    assert compile_plan({**config, "compile": "on"}, cpu) == "default"
    assert compile_plan({**config, "compile": "on", "compile_mode": "max-autotune"}, cuda) == "max-autotune"
    assert compile_plan({**config, "compile": "off"}, cuda) == "off"


def test_compiled_batches_pad_to_buckets_of_16_tokens_up_to_the_window():
    from data import build_loader
    from data.tokenized import TokenizedExamples

    lengths = [3, 70, 130, 300]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    examples = TokenizedExamples(np.ones(offsets[-1], dtype=np.int32), offsets, [[0]] * 4, 2)
    widths = {tuple(b["attention_mask"].shape)[1] for b in build_loader(examples, 1, 0, False, compiled=True,
                                                                       max_length=300)}
    assert widths == {16, 80, 144, 300}
    assert {b["attention_mask"].shape[1] for b in build_loader(examples, 1, 0, False)} == set(lengths)


def test_an_older_checkpoint_is_read_with_what_it_ran_and_the_reader_is_told(trained_run, tmp_path, capsys):
    from engine.checkpoint import load_checkpoint, save_checkpoint

    state = torch.load(trained_run[0] / "last.pt", weights_only=True)
    del state["format"], state["config"]["chunk_pool"], state["config"]["loss"]  # as format 1 wrote it
    save_checkpoint(str(tmp_path / "old.pt"), state)
    loaded = load_checkpoint(str(tmp_path / "old.pt"))
    assert (loaded["config"]["chunk_pool"], loaded["config"]["loss"]) == ("max", "bce")
    assert "saved by an older version; read with chunk_pool='max', loss='bce'" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, rule", [
    ("--threshold", "0.3", "fixed"),  # --select-metric is measured at it: best.pt would change scale
    ("--max-chunks", "2", "fixed"),
    ("--tune-objective", "macro_f1", "applied"),
    ("--eval-batch-size", "8", "applied"),
    ("--attention", "eager", "applied"),
    ("--compile", "on", "applied"),
    ("--device", "cpu", "free"),
])
def test_each_rule_on_resume(trained_run, flag, value, rule):
    out = trained_run[0]
    argv = ["--resume", str(out / "last.pt"), flag, *([value] if value else [])]
    name = flag[2:].replace("-", "_")
    if rule == "fixed":
        with pytest.raises(ConfigError, match=f"{flag} {value}: the run being resumed has"):
            resolve_run(parse_flags(TRAIN_FIELDS, argv))
        return
    given = parse_flags(TRAIN_FIELDS, argv)
    config, resume, changes = resolve_run(given)
    assert config[name] == given[name]
    assert (name in changes) == (rule == "applied")
    if rule == "applied":
        assert changes[name][0] == resume["config"][name]


def test_free_settings_are_never_taken_from_the_checkpoint(trained_run, tmp_path):
    from engine.checkpoint import save_checkpoint

    state = torch.load(trained_run[0] / "last.pt", weights_only=True)
    state["config"].update(device="cuda:3", workers=4)  # where it ran before: not necessarily here
    save_checkpoint(str(tmp_path / "last.pt"), state)
    config, _, changes = resolve_run(parse_flags(TRAIN_FIELDS, ["--resume", str(tmp_path / "last.pt")]))
    assert (config["device"], config["workers"], config["output_dir"]) == ("auto", 0, str(tmp_path))
    assert changes == {}
