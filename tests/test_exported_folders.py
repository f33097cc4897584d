"""Exported folders as users copy, edit and serve them: export.py never deletes what it did not write, and a folder
damaged or edited in a way that cannot work is refused in one line before any of it is used, never prompting."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import export
import predict
from conftest import ROOT, fingerprint


def fails(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("exports") / "hf"
    export.main(["--ckpt", str(trained_run[0] / "best.pt"), "--out", str(folder)])
    return str(folder)


def test_export_never_deletes_the_checkpoint_it_exports_nor_another_tools_files(trained_run, tmp_path, capsys):
    ship = tmp_path / "ship"
    ship.mkdir()
    shutil.copy(trained_run[0] / "best.pt", ship / "best.pt")
    before = fingerprint(ship)
    assert "holds the checkpoint being exported" in fails(
        export.main, ["--ckpt", str(ship / "best.pt"), "--out", str(ship), "--overwrite"], capsys)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("model.onnx", "serve.py", "labels.txt"):
        (other / name).write_text("another tool's")
    others = fingerprint(other)
    assert "did not write (labels.txt, model.onnx, serve.py)" in fails(
        export.main, ["--ckpt", str(ship / "best.pt"), "--out", str(other), "--overwrite"], capsys)
    assert fingerprint(ship) == before and fingerprint(other) == others


def test_a_folder_that_appears_at_out_while_exporting_is_left_as_it_is(trained_run, tmp_path, capsys, monkeypatch):
    import engine.serving.export as checkpoint_export

    out = tmp_path / "out"
    real = checkpoint_export.export_model

    def export_while_another_appears(*args):
        result = real(*args)
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        return result

    monkeypatch.setattr(checkpoint_export, "export_model", export_while_another_appears)
    assert "appeared while exporting" in fails(export.main, ["--ckpt", str(trained_run[0] / "best.pt"), "--out",
                                                             str(out)], capsys)
    assert os.listdir(out) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.slow
def test_sigterm_during_an_export_leaves_no_staging_folder_and_a_killed_exports_is_removed_later(trained_run,
                                                                                                  tmp_path):
    dead = tmp_path / ".out.export-999999999-abc"  # what a SIGKILLed export (a pid no process has) left
    (dead / "export").mkdir(parents=True)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "export.py"), "--ckpt",
                                str(trained_run[0] / "best.pt"), "--out", str(tmp_path / "out")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.time()
    while not [n for n in os.listdir(tmp_path) if n.startswith(f".out.export-{process.pid}-")]:
        assert time.time() - start < 120 and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []  # neither the interrupted export's staging folder nor the dead one's


def damaged_copy(exported, tmp_path, damage) -> str:
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    damage(folder)
    return str(folder)


def edit_config(edit):
    def damage(folder):
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    return damage


def cut_short(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


DAMAGED = [
    (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json: missing"),
    (cut_short, "model.safetensors: 1,000 bytes, but the export wrote"),
    (edit_config(lambda c: c["id2label"].update({"0": "pear"})), "id2label (5 labels) and its multi_label label "
                                                                 "names (5) disagree from label 0 on"),
    (edit_config(lambda c: c["multi_label"]["label_names"].pop()), "disagree from label 4 on"),
    (edit_config(lambda c: c["multi_label"]["config"].update(max_length=1000)), "max_length 1000 is beyond"),
    (edit_config(lambda c: c["multi_label"]["config"].update(long_doc="chunk", stride=500)),
     "stride 500: windows of max_length 32 hold 30 tokens of text"),
]


@pytest.mark.parametrize("case", range(len(DAMAGED)), ids=[fragment[:30] for _, fragment in DAMAGED])
def test_a_damaged_or_mis_edited_export_is_one_line(case, exported, tmp_path, capsys):
    damage, fragment = DAMAGED[case]
    folder = damaged_copy(exported, tmp_path, damage)
    assert fragment in fails(predict.main, ["--ckpt", folder, "appleword1 filler2"], capsys)


@pytest.mark.slow
def test_an_export_without_its_tokenizer_config_never_asks_or_runs_its_code(exported, tmp_path):
    folder = damaged_copy(exported, tmp_path, lambda f: (f / "tokenizer_config.json").unlink())
    done = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--ckpt", folder], cwd=ROOT,
                          input="yes\nappleword1 filler2\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "tokenizer_config.json: missing" in done.stderr and "[y/N]" not in done.stdout + done.stderr
