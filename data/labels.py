"""Turn column tables into examples: ids, texts and the indices of each example's labels.

Labels come in one of two forms, the same in every split: one list column (label names, or integer ids
that a `ClassLabel` feature names) or one 0/1 column per label.
"""
import difflib
import json
import math
import unicodedata

from data.errors import DataError
from data.examples import Examples
from data.reading import Table

TEXT_COLUMNS = ("text", "sentence", "tweet", "content", "document", "body")
ID_COLUMNS = ("id", "celex_id", "uid", "guid", "doc_id")
LIST_LABEL_COLUMNS = ("labels", "label")

# MultiEURLEX's 21 level-1 labels are EUROVOC concept ids; these are their English names (EUROVOC domains). They
# name a label column only when it is MultiEURLEX's: a ClassLabel whose names are exactly these 21 ids.
EUROVOC_LEVEL_1 = {
    "100149": "social questions", "100160": "industry", "100148": "finance", "100147": "trade",
    "100152": "business and competition", "100143": "international relations",
    "100156": "agriculture, forestry and fisheries", "100158": "production, technology and research",
    "100154": "transport", "100153": "employment and working conditions", "100142": "politics",
    "100145": "law", "100150": "education and communications", "100162": "international organisations",
    "100159": "energy", "100144": "EUROPEAN UNION", "100151": "science", "100157": "agri-foodstuffs",
    "100161": "geography", "100146": "economics", "100155": "environment",
}


def encode_tables(tables: dict[str, Table], text_column=None, label_column=None, label_names=None,
                  label_separator=",") -> tuple[dict[str, Examples], list[str]]:
    """Returns examples per split and the label names. With `label_names` given (a checkpoint's), every
    label must be one of them; otherwise the label set is read from the data."""
    forms = {split: _label_form(table, text_column, label_column) for split, table in tables.items()}
    _check_same_form(tables, forms)
    if label_names is not None:
        split, table = next(iter(tables.items()))
        columns = forms[split][2]
        if isinstance(columns, list):
            unknown = [c for c in columns if c not in label_names]
            if unknown:
                raise DataError(f"{table.source}: column {unknown[0]!r} is not a label of the checkpoint "
                                f"({_nearest(unknown[0], label_names)})")
            missing = [name for name in label_names if name not in columns]
            if missing:  # scoring those labels as never present would report a different F1
                raise DataError(f"{table.source}: no column for the checkpoint's label(s) {_preview(missing)}; "
                                "every label needs its 0/1 column")
    names_per_split = {split: _label_names_per_row(table, forms[split], label_separator)
                       for split, table in tables.items()}
    if label_names is None:
        label_names = _label_set(tables, forms, names_per_split)
    index = {name: i for i, name in enumerate(label_names)}
    examples = {}
    for split, table in tables.items():
        text_col, id_col, _ = forms[split]
        texts = _texts(table, text_col)
        labels = []
        for row, names in enumerate(names_per_split[split]):
            unknown = [name for name in names if name not in index]
            if unknown:
                raise DataError(f"{table.source}: row {table.row_number(row)}: label {unknown[0]!r} is not in the "
                                f"label set ({_nearest(unknown[0], label_names)})")
            labels.append(sorted({index[name] for name in names}))
        ids = [str(v) for v in table.columns[id_col]] if id_col else [str(i) for i in range(len(table))]
        examples[split] = Examples(ids, texts, labels)
    return examples, label_names


def _nearest(name: str, names: list[str]) -> str:
    """The label names closest to a misspelt one first (`sadnes` -> `did you mean sadness?`), then a preview."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return (f"did you mean {' or '.join(close)}? " if close else "") + _preview(names)


def _preview(names, limit=8):
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _find_column(table: Table, candidates) -> str | None:
    lower = {name.lower(): name for name in table.columns}
    return next((lower[c] for c in candidates if c in lower), None)


def _text_column(table: Table, text_column: str | None) -> str:
    """The text column (`--text-column`, or the first of TEXT_COLUMNS), in a table that has rows."""
    if len(table) == 0:
        raise DataError(f"{table.source}: no rows")
    if text_column is not None and text_column not in table.columns:
        raise DataError(f"{table.source}: no text column {text_column!r} (columns: {', '.join(table.columns)}); "
                        "set --text-column")
    column = text_column or _find_column(table, TEXT_COLUMNS)
    if column is None:
        raise DataError(f"{table.source}: no text column among {', '.join(table.columns)}; set --text-column")
    return column


def _label_form(table: Table, text_column, label_column):
    """(text column, id column, label column name or a list of 0/1 column names)."""
    columns = list(table.columns)
    text_col = _text_column(table, text_column)
    id_col = _find_column(table, ID_COLUMNS)
    if label_column is not None:
        if label_column not in table.columns:
            raise DataError(f"{table.source}: no label column {label_column!r} (columns: {', '.join(columns)}); "
                            "set --label-column")
        return text_col, id_col, label_column
    list_col = _find_column(table, LIST_LABEL_COLUMNS)
    if list_col is not None:
        return text_col, id_col, list_col
    others = [c for c in columns if c not in (text_col, id_col)]
    lists = [c for c in others if isinstance(next((v for v in table.columns[c] if v is not None), None), list)]
    if len(lists) > 1:  # EURLEX57K: domains, microthesauri, descriptors: three label sets of the same texts
        raise DataError(f"{table.source}: {len(lists)} list columns could be the labels ({', '.join(lists)}); "
                        "choose one with --label-column")
    if lists:
        return text_col, id_col, lists[0]
    flag_cols = others
    if not flag_cols:
        raise DataError(f"{table.source}: no label columns (a 'labels' list column or one 0/1 column per label); "
                        "set --label-column")
    return text_col, id_col, flag_cols


def _check_same_form(tables, forms):
    first_split = next(iter(forms))
    first = forms[first_split][2]
    for split, (_, _, labels) in forms.items():
        if isinstance(labels, list) != isinstance(first, list) or (isinstance(first, list) and labels != first):
            raise DataError(f"{tables[split].source}: mixed label forms: its label columns ({labels}) differ from "
                            f"those of {tables[first_split].source} ({first})")


def _texts(table: Table, column: str) -> list[str]:
    """The column's texts. An empty or blank text is a valid example (real corpora have them, and the encoder
    still sees its special tokens); a missing one or a value that is not text is an error."""
    texts = table.columns[column]
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            what = "no text" if text is None else f"{type(text).__name__}, not text"
            raise DataError(f"{table.source}: row {table.row_number(row)}: column {column!r} holds {what}")
    return texts


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _flag(table, row, column, value) -> bool:
    if _is_missing(value):
        raise DataError(f"{table.source}: row {table.row_number(row)}: missing label in column {column!r}")
    if value in (0, 1, "0", "1", True, False, "0.0", "1.0"):
        return value in (1, "1", True, "1.0")
    raise DataError(f"{table.source}: row {table.row_number(row)}: column {column!r} holds {value!r}; "
                    "label columns hold 0 or 1")


def _parse_list(table, row, column, value, separator):
    """A list, a JSON list in text, or names joined by `separator` (an empty cell: no labels)."""
    if value == "":
        return []
    if _is_missing(value):
        raise DataError(f"{table.source}: row {table.row_number(row)}: missing labels in column {column!r}")
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(f"{table.source}: row {table.row_number(row)}: column {column!r} holds "
                                f"{value!r}, not a JSON list") from None
        else:
            value = [part.strip() for part in value.split(separator) if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{table.source}: row {table.row_number(row)}: column {column!r} holds {value!r}, "
                        "not a list of labels")
    for item in value:
        if _is_missing(item) or isinstance(item, (bool, float)) or not isinstance(item, (int, str)):
            raise DataError(f"{table.source}: row {table.row_number(row)}: column {column!r} holds the label "
                            f"{item!r}; labels are names or integer ids")
    return list(value)


def _label_names_per_row(table: Table, form, separator) -> list[list[str]]:
    """Each row's labels as names: ids are named by the column's ClassLabel, else by their decimal form."""
    _, _, labels = form
    if isinstance(labels, list):
        flags = [[_flag(table, row, c, table.columns[c][row]) for c in labels] for row in range(len(table))]
        names = _flag_label_names(table, labels)
        return [[name for name, on in zip(names, row) if on] for row in flags]
    lists = [_parse_list(table, row, labels, v, separator) for row, v in enumerate(table.columns[labels])]
    first_kind = next((type(item) for items in lists for item in items), None)
    for row, items in enumerate(lists):
        if any(type(item) is not first_kind for item in items):
            raise DataError(f"{table.source}: row {table.row_number(row)}: mixed label forms in column "
                            f"{labels!r}: integer ids and names")
    class_names = _class_names(table, labels)
    if class_names is None:
        named = [[label_name(item) for item in items] for items in lists]
        blank = next((row for row, names in enumerate(named) if "" in names), None)
        if blank is not None:
            raise DataError(f"{table.source}: row {table.row_number(blank)}: column {labels!r} holds a blank label")
        return named
    named = []
    for row, items in enumerate(lists):
        for item in items:
            if not isinstance(item, int) or not 0 <= item < len(class_names):
                raise DataError(f"{table.source}: row {table.row_number(row)}: label id {item!r} is out of range "
                                f"(the column names {len(class_names)} labels)")
        named.append([class_names[item] for item in items])
    return named


def label_name(value) -> str:
    """A label as a name: NFC-normalized, without surrounding spaces, so that "Café", "Cafe\u0301" and "Café "
    (one label written three ways, as real files do) are one label."""
    return unicodedata.normalize("NFC", str(value)).strip()


def _flag_label_names(table: Table, columns: list[str]) -> list[str]:
    names = [label_name(c) for c in columns]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DataError(f"{table.source}: the label columns {columns[names.index(name)]!r} and {columns[i]!r} "
                            "name one label (they differ only in spaces or Unicode form); merge or rename them")
        if not name:
            raise DataError(f"{table.source}: a label column without a name ({columns[i]!r})")
    return names


def _class_names(table: Table, column: str) -> list[str] | None:
    """The names a ClassLabel column gives its ids, MultiEURLEX's level 1 in English; None for other columns."""
    names = table.class_names.get(column)
    if names is not None and set(names) == set(EUROVOC_LEVEL_1):
        return [EUROVOC_LEVEL_1[name] for name in names]
    return names


def _label_set(tables, forms, names_per_split) -> list[str]:
    """In the data's own order where it has one (0/1 columns, ClassLabel), else sorted."""
    split, table = next(iter(tables.items()))
    labels = forms[split][2]
    if isinstance(labels, list):
        return _flag_label_names(table, labels)
    if labels in table.class_names:
        return _class_names(table, labels)
    seen = {name for rows in names_per_split.values() for names in rows for name in names}
    if not seen:
        raise DataError(f"{table.source}: no example has any label")
    return sorted(seen, key=lambda n: (0, int(n), "") if n.isascii() and n.isdigit() else (1, 0, n))


def read_texts(path: str, text_column: str | None = None, trained_column: str | None = None) -> Examples:
    """Unlabelled examples to predict: a .txt file (one text per line) or a csv, tsv, jsonl or parquet file; its
    text column is `text_column`, else the training run's (`trained_column`) where the file has it, else found
    as in training."""
    from data.reading import read_file

    table = read_file(path, allow_txt=True)
    if text_column is None and trained_column in table.columns:
        text_column = trained_column
    texts = _texts(table, _text_column(table, text_column))
    id_column = _find_column(table, ID_COLUMNS)
    return Examples.unlabelled(texts, [str(v) for v in table.columns[id_column]] if id_column else None)
