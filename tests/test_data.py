"""Every file form and label form gives the same examples; MultiEURLEX's parquet layout gets its English names."""
import csv
import json
import time

import datasets
import pytest

import train
from conftest import LABELS, synthetic_rows
from data import EUROVOC_LEVEL_1, load_examples

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
