"""How the labels are spread before training: per level, how many, how many are rare in the training examples, labels
per example, and those that occur outside training only (a short block on the console, a table in the run folder)."""
import numpy as np

RARE = (10, 50)
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def label_table(splits: dict, label_names: list[str], levels: dict | None = None) -> list[dict]:
    """One row per label: its name, its level (`labels` without a hierarchy) and how many examples of each split
    have it."""
    level_of = np.full(len(label_names), "labels", dtype=object)
    for level, indices in (levels or {}).items():
        level_of[indices] = level
    counts = {}
    for split, examples in sorted(splits.items(), key=lambda item: SPLIT_ORDER.get(item[0], len(SPLIT_ORDER))):
        counts[split] = np.zeros(len(label_names), dtype=np.int64)
        for labels in examples.labels:
            counts[split][labels] += 1
    return [{"label": name, "level": level_of[j], **{split: int(c[j]) for split, c in counts.items()}}
            for j, name in enumerate(label_names)]


def summary_lines(rows: list[dict], train_examples: int) -> list[str]:
    """Per level: labels, rare ones, labels per training example; then the labels of other splits that no training
    example has (no model learns them, and they still count in every metric)."""
    lines, unseen_lines = [], []
    levels = list(dict.fromkeys(row["level"] for row in rows))
    splits = [key for key in (rows[0] if rows else {}) if key not in ("label", "level")]
    for level in levels:
        in_level = [row for row in rows if row["level"] == level]
        rare = [sum(row["train"] < n for row in in_level) for n in RARE]
        per_example = sum(row["train"] for row in in_level) / max(1, train_examples)
        prefix = "" if level == "labels" else f"{level}: "
        lines.append(f"{prefix}{len(in_level)} labels; in the training examples " + ", ".join(
            f"{r} with fewer than {n}" for r, n in zip(rare, RARE)) + f"; {per_example:.2f} per training example")
        for split in splits:
            unseen = [row["label"] for row in in_level if row[split] and not row["train"]]
            if split != "train" and unseen:
                names = ", ".join(unseen[:8]) + (", ..." if len(unseen) > 8 else "")
                unseen_lines.append(("" if level == "labels" else f"{level}: ")
                                    + f"{len(unseen)} of the labels in {split} never occur in the training examples: "
                                    + names)
    return lines + unseen_lines


def table_text(rows: list[dict]) -> str:
    """label_stats.tsv: label, level, then its count in each split, the most frequent in training first."""
    columns = list(rows[0]) if rows else ["label", "level", "train"]
    ordered = sorted(rows, key=lambda row: -row.get("train", 0))
    clean = lambda value: str(value).replace("\t", " ").replace("\n", " ")  # noqa: E731
    return "\t".join(columns) + "\n" + "".join("\t".join(clean(row[c]) for c in columns) + "\n" for row in ordered)
