"""Bad data: a missing file, column, split or label, a malformed row: one line naming it, exit status 2, and the
previous run untouched."""
import json

import pyarrow.parquet as pq

import evaluate
from conftest import LABELS, expect_error, synthetic_rows, train_fails, write_flag_tsv, write_jsonl

def test_missing_file(tiny_bert, previous_run, tmp_path, capsys):
    train_fails(tiny_bert, tmp_path / "nope.csv", previous_run, capsys, "nope.csv: no such file")


def test_unknown_text_column(tiny_bert, synthetic_folder, previous_run, capsys):
    train_fails(tiny_bert, synthetic_folder, previous_run, capsys, "no text column 'body2'", "--text-column", "body2")


def test_unknown_label_column(tiny_bert, synthetic_folder, previous_run, capsys):
    train_fails(tiny_bert, synthetic_folder, previous_run, capsys, "no label column 'tags'", "--label-column", "tags")


def test_non_string_text(tiny_bert, previous_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "fine", "labels": ["apple"]}, {"text": 5, "labels": []}])
    train_fails(tiny_bert, data, previous_run, capsys, "d.jsonl: row 2: column 'text' holds int, not text")


def test_missing_labels(tiny_bert, previous_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "fine", "labels": ["apple"]}, {"text": "no", "labels": None}])
    train_fails(tiny_bert, data, previous_run, capsys, "d.jsonl: row 2: missing labels in column 'labels'")


def test_nan_label(tiny_bert, previous_run, tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "apple": 1, "banana": 0}\n{"text": "b", "apple": NaN, "banana": 1}\n')
    train_fails(tiny_bert, tmp_path / "d.jsonl", previous_run, capsys, "row 2: missing label in column 'apple'")


def test_label_id_out_of_range(tiny_bert, previous_run, tmp_path, capsys):
    """A parquet file whose ClassLabel names 5 labels but holds the id 7 (datasets itself would not write it)."""
    import datasets

    plain = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[0], [1, 7]]})
    plain.to_parquet(str(tmp_path / "plain.parquet"))
    table = pq.read_table(tmp_path / "plain.parquet")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.List(datasets.ClassLabel(names=LABELS))})
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), tmp_path / "d.parquet")
    train_fails(tiny_bert, tmp_path / "d.parquet", previous_run, capsys, "d.parquet: row 2: label id 7 is out of range")


def test_zero_rows(tiny_bert, previous_run, tmp_path, capsys):
    write_flag_tsv(tmp_path / "d.tsv", [])
    train_fails(tiny_bert, tmp_path / "d.tsv", previous_run, capsys, "d.tsv: no rows")


def test_mixed_label_forms(tiny_bert, previous_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["apple"]}, {"text": "b", "labels": [0, "apple"]}])
    train_fails(tiny_bert, data, previous_run, capsys, "row 2: mixed label forms in column 'labels'")


def test_mixed_label_forms_across_splits(tiny_bert, previous_run, tmp_path, capsys):
    write_flag_tsv(tmp_path / "train.tsv", synthetic_rows(20, seed=1))
    write_jsonl(tmp_path / "validation.jsonl", [{"text": "a", "labels": ["apple"]}])
    train_fails(tiny_bert, tmp_path, previous_run, capsys, "mixed label forms")


def test_missing_split(trained_run, tmp_path, capsys):
    write_flag_tsv(tmp_path / "train.tsv", synthetic_rows(20, seed=1))
    write_flag_tsv(tmp_path / "validation.tsv", synthetic_rows(20, seed=2))
    argv = ["--ckpt", str(trained_run[0] / "best.pt"), "--data", str(tmp_path), "--split", "test"]
    expect_error(evaluate.main, argv, capsys, "--split test: ")


def test_a_label_name_the_checkpoint_does_not_know(trained_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["apple"]}, {"text": "b", "labels": ["grape"]}])
    argv = ["--ckpt", str(trained_run[0] / "best.pt"), "--data", data]
    expect_error(evaluate.main, argv, capsys, "d.jsonl: row 2: label 'grape' is not in the label set")


def test_a_label_column_the_checkpoint_does_not_know(trained_run, tmp_path, capsys):
    (tmp_path / "d.tsv").write_text("text\tapple\tgrape\nsome text\t1\t0\n")
    argv = ["--ckpt", str(trained_run[0] / "best.pt"), "--data", str(tmp_path / "d.tsv")]
    expect_error(evaluate.main, argv, capsys, "column 'grape' is not a label of the checkpoint")


def test_a_misspelt_label_gets_the_nearest_names(trained_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["apple"]}, {"text": "b", "labels": ["cherri"]}])
    line = expect_error(evaluate.main, ["--ckpt", str(trained_run[0] / "best.pt"), "--data", data], capsys,
                        "label 'cherri' is not in the label set")
    assert "did you mean cherry?" in line
