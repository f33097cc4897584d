"""Every file form and label form gives the same examples; MultiEURLEX's parquet layout gets its English names."""
import csv
import json
import time

import datasets
import pytest

import train
from conftest import LABELS, synthetic_rows
from data import load_examples
from data.errors import DataError
from data.labels import EUROVOC_LEVEL_1

ROWS = synthetic_rows(40, seed=7)
NOTEBOOK_ORDER = ["social questions", "industry", "finance", "trade", "business and competition",
                  "international relations", "agriculture, forestry and fisheries",
                  "production, technology and research", "transport", "employment and working conditions",
                  "politics", "law", "education and communications", "international organisations", "energy",
                  "EUROPEAN UNION", "science", "agri-foodstuffs", "geography", "economics", "environment"]


def write_delimited(path, header, rows, delimiter=",", newline="\n", bom=False):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def flag_row(i, text, labels):
    return [f"ex{i}", text, *[int(label in labels) for label in LABELS]]


FORMS = {
    "tsv_flags": lambda p: write_delimited(p / "d.tsv", ["id", "text", *LABELS],
                                           [flag_row(i, t, ls) for i, (t, ls) in enumerate(ROWS)], "\t"),
    "csv_flags_crlf_bom": lambda p: write_delimited(p / "d.csv", ["id", "text", *LABELS],
                                                    [flag_row(i, t, ls) for i, (t, ls) in enumerate(ROWS)],
                                                    newline="\r\n", bom=True),
    "csv_name_list": lambda p: write_delimited(p / "d.csv", ["id", "text", "labels"],
                                               [[f"ex{i}", t, ",".join(ls)] for i, (t, ls) in enumerate(ROWS)]),
    "csv_json_list": lambda p: write_delimited(p / "d.csv", ["id", "text", "labels"],
                                               [[f"ex{i}", t, json.dumps(ls)] for i, (t, ls) in enumerate(ROWS)]),
    "jsonl_names": lambda p: write_jsonl(p / "d.jsonl", [{"id": f"ex{i}", "text": t, "labels": ls}
                                                         for i, (t, ls) in enumerate(ROWS)]),
    "jsonl_flags": lambda p: write_jsonl(p / "d.jsonl", [dict(zip(["id", "text", *LABELS], flag_row(i, t, ls)))
                                                         for i, (t, ls) in enumerate(ROWS)]),
    "parquet_classlabel_ids": lambda p: datasets.Dataset.from_dict(
        {"id": [f"ex{i}" for i in range(len(ROWS))], "text": [t for t, _ in ROWS],
         "labels": [[LABELS.index(label) for label in ls] for _, ls in ROWS]},
        features=datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string"),
                                    "labels": datasets.List(datasets.ClassLabel(names=LABELS))})
    ).to_parquet(str(p / "d.parquet")),
    "parquet_names": lambda p: datasets.Dataset.from_dict(
        {"id": [f"ex{i}" for i in range(len(ROWS))], "text": [t for t, _ in ROWS], "labels": [ls for _, ls in ROWS]}
    ).to_parquet(str(p / "d.parquet")),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_gives_the_same_label_matrix(form, tmp_path):
    FORMS[form](tmp_path)
    (path,) = list(tmp_path.iterdir())
    splits, names = load_examples(str(path), val_fraction=0, log=lambda *a: None)
    assert names == LABELS
    examples = splits["train"]
    assert examples.ids == [f"ex{i}" for i in range(len(ROWS))]
    assert examples.texts == [t for t, _ in ROWS]
    assert examples.labels == [[LABELS.index(label) for label in ls] for _, ls in ROWS]


def test_a_single_file_gets_a_seeded_validation_split(tmp_path):
    FORMS["tsv_flags"](tmp_path)
    first, _ = load_examples(str(tmp_path / "d.tsv"), val_fraction=0.25, split_seed=3, log=lambda *a: None)
    again, _ = load_examples(str(tmp_path / "d.tsv"), val_fraction=0.25, split_seed=3, log=lambda *a: None)
    assert len(first["validation"]) == 10 and len(first["train"]) == 30
    assert first["validation"].ids == again["validation"].ids
    assert not set(first["validation"].ids) & set(first["train"].ids)


def multi_eurlex_like(folder, n=12):
    """A local copy shaped like coastalcph/multi_eurlex (config en): celex_id, text, labels as ClassLabel ids."""
    features = datasets.Features({"celex_id": datasets.Value("string"), "text": datasets.Value("string"),
                                  "labels": datasets.List(datasets.ClassLabel(names=list(EUROVOC_LEVEL_1)))})
    for split in ("train", "validation", "test"):
        rows = {"celex_id": [f"3{split}{i}" for i in range(n)], "text": [f"regulation {i} of {split}" for i in range(n)],
                "labels": [[i % 21, (i * 5 + 3) % 21] for i in range(n)]}
        (folder / "en").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "en" / f"{split}-00000-of-00001.parquet"))


def test_multi_eurlex_parquet_folder_loads_with_english_label_names(tmp_path):
    multi_eurlex_like(tmp_path)
    splits, names = load_examples(str(tmp_path), log=lambda *a: None)
    assert names == NOTEBOOK_ORDER
    assert set(splits) == {"train", "validation", "test"}
    assert splits["test"].ids[1] == "3test1"
    assert splits["train"].labels[1] == [1, 8]
    assert names[0] == "social questions" and list(EUROVOC_LEVEL_1)[0] == "100149"


def test_unreachable_hub_stops_at_once_naming_the_offline_route(monkeypatch, tmp_path, capsys):
    import huggingface_hub

    import data.reading

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(data.reading, "hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(tmp_path / "run"), "--data", "someone/not-cached-here"])
    assert exit_info.value.code == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data someone/not-cached-here" in err[0] and "--data FOLDER" in err[0]


def test_eurovoc_names_are_given_to_multi_eurlex_ids_only(tmp_path):
    """A product code 100149 in another dataset stays 100149: only MultiEURLEX's 21-id ClassLabel is renamed."""
    with open(tmp_path / "train.jsonl", "w") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"item {i}", "labels": ["100149", "social questions"][: 1 + i % 2]}) + "\n")
    _, names = load_examples(str(tmp_path / "train.jsonl"), val_fraction=0, log=lambda *a: None)
    assert names == ["100149", "social questions"]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.List(datasets.ClassLabel(names=["100149", "100160", "999"]))})
    datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[0], [1, 2]]}, features=features).to_parquet(
        str(tmp_path / "codes.parquet"))
    _, names = load_examples(str(tmp_path / "codes.parquet"), val_fraction=0, log=lambda *a: None)
    assert names == ["100149", "100160", "999"]


def eurlex_like(folder, n_train=60, n_val=20):
    """Gzipped JSON lines shaped like ../shared/data/eurlex57k: three label lists of the same laws, and a
    descriptor level with many labels of a few examples each, some only in validation."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("validation", n_val, 1)):
        with gzip.open(folder / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            for i in range(n):
                record = {"id": f"3{split}{i}", "text": f"regulation {i} on trade {i % 3}",
                          "domains": ["TRADE", "LAW"][: 1 + i % 2], "microthesauri": [f"mt{i % 5}"],
                          "descriptors": [f"d{i % 30}", f"d{(i * 7) % 45}"] + ([f"new{i % 3}"] if offset else [])}
                f.write(json.dumps(record) + "\n")
    (folder / "eurovoc.json").write_text("{}")  # beside the splits, as in the shared copy: not a split


def test_gzipped_json_lines_are_read_and_a_label_level_is_chosen(tmp_path):
    eurlex_like(tmp_path / "laws")
    logged = []
    splits, names = load_examples(str(tmp_path / "laws"), label_column="domains", log=logged.append)
    assert names == ["LAW", "TRADE"] and len(splits["train"]) == 60 and splits["validation"].ids[0] == "3validation0"
    splits, names = load_examples(str(tmp_path / "laws"), label_column="descriptors", log=logged.append)
    assert len(names) == 48 and {"new0", "new1", "new2"} <= set(names)
    assert "3 of the labels in validation never occur in the training examples: new0, new1, new2" in logged


def test_several_list_columns_and_no_label_column_is_one_line_naming_them(tiny_bert, tmp_path, capsys):
    eurlex_like(tmp_path / "laws")
    argv = ["--model", tiny_bert, "--data", str(tmp_path / "laws"), "--output-dir", str(tmp_path / "run"),
            "--cache-dir", ""]
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'laws' / 'train.jsonl.gz'}: 3 list columns could be the labels (domains, "
                   "microthesauri, descriptors); choose one with --label-column"]
    assert not (tmp_path / "run").exists()


def test_a_truncated_gzip_file_is_named_in_one_line(tmp_path):
    eurlex_like(tmp_path / "laws")
    whole = (tmp_path / "laws" / "train.jsonl.gz").read_bytes()
    (tmp_path / "laws" / "train.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"train.jsonl.gz: not a whole gzip file"):
        load_examples(str(tmp_path / "laws"), label_column="domains", log=lambda *a: None)
