"""What the user reads of a study: trials.csv and best.json written after each trial, best.pt linked to the best
trial's checkpoint, and the table printed at the end."""
import csv
import io
import json
import os
import shlex

from engine.files import atomic_write, write_json
from engine.search.space import train_flags


def read_records(folder: str) -> list[dict]:
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def epoch_seconds(record: dict) -> float:
    return sum(record.get(k, 0) for k in ("train_seconds", "train_embed_seconds", "train_fit_seconds",
                                          "val_seconds"))


def best_epoch(records: list[dict], metric: str) -> tuple:
    """(the best value of `metric` in a trial's epoch records, its epoch: the earliest of equals), or (None, None)."""
    scored = [(r.get(f"val_{metric}"), r["epoch"]) for r in records]
    scored = [(v, e) for v, e in scored if isinstance(v, (int, float))]
    return max(scored, key=lambda p: (p[0], -p[1])) if scored else (None, None)


class Results:
    def __init__(self, study, folder: str, metric: str, dims, common: list[str], log=print):
        self.study, self.folder, self.metric, self.dims, self.common, self.log = study, folder, metric, dims, common, log

    def rows(self) -> list[dict]:
        rows, trials = [], self.study.get_trials(deepcopy=False)
        retried = {t.system_attrs.get("retry_of") for t in trials}
        for t in trials:
            if t.number in retried:
                continue  # failed by a dead worker: its queued copy is the row
            records = read_records(t.user_attrs.get("folder", ""))
            best, epoch = best_epoch(records, self.metric)
            rows.append({"trial": t.number, "state": t.state.name.lower(), self.metric: best, "best_epoch": epoch,
                         "epochs_run": len(records), "seconds": round(t.user_attrs.get("wall_s", 0.0), 1),
                         "training_seconds": round(sum(epoch_seconds(r) for r in records), 1),
                         "baseline": bool(t.user_attrs.get("baseline")), **t.params,
                         "folder": t.user_attrs.get("folder", "")})
        return rows

    def best_row(self, rows: list[dict]) -> dict | None:
        done = [r for r in rows if r["state"] == "complete" and r[self.metric] is not None]
        return max(done, key=lambda r: (r[self.metric], -r["trial"])) if done else None

    def command(self, row: dict) -> str:
        params = {d.name: row[d.name] for d in self.dims}
        return shlex.join(["python", "train.py", *self.common, *train_flags(params)])

    def write(self) -> dict | None:
        """trials.csv, best.json and best.pt (a link to the best trial's best.pt) in the study folder."""
        rows = self.rows()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(os.path.join(self.folder, "trials.csv"), lambda f: f.write(text.getvalue().encode()))
        best = self.best_row(rows)
        if best is None:
            return None
        checkpoint = os.path.join(best["folder"], "best.pt")
        write_json(os.path.join(self.folder, "best.json"),
                   {"trial": best["trial"], self.metric: best[self.metric], "best_epoch": best["best_epoch"],
                    "settings": {d.name: best[d.name] for d in self.dims}, "command": self.command(best),
                    "checkpoint": checkpoint})
        if os.path.exists(checkpoint):
            link, tmp = os.path.join(self.folder, "best.pt"), os.path.join(self.folder, ".best.pt.tmp")
            if os.path.lexists(tmp):
                os.remove(tmp)
            os.symlink(os.path.relpath(checkpoint, self.folder), tmp)
            os.replace(tmp, link)
        return best

    def cell(self, row: dict, column: str) -> str:
        value = row.get(column)
        text = "-" if value is None else f"{value:.4f}" if column == self.metric else \
            f"{value:.4g}" if isinstance(value, float) else str(value)
        return text + ("*" if column == "trial" and row["baseline"] else "")

    def report(self) -> dict:
        rows, best = self.rows(), self.write()
        columns = ["trial", "state", self.metric, "best_epoch", "epochs_run", "seconds", *[d.name for d in self.dims]]
        table = [columns] + [[self.cell(r, c) for c in columns] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        for row in table:
            self.log("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        self.log("(* the baseline: the flags given)" if any(r["baseline"] for r in rows) else "")
        if best is None:
            self.log("no trial has finished every epoch yet")
            return {"best": None, "rows": rows}
        pruned = [r for r in rows if r["state"] == "pruned"]
        self.log(f"best: trial {best['trial']}, {self.metric} {best[self.metric]:.4f} at epoch {best['best_epoch']}"
                 f"; {len(pruned)} of {len(rows)} trials pruned")
        self.log(f"reproduce: {self.command(best)}")
        self.log(f"its checkpoint: {os.path.join(self.folder, 'best.pt')} "
                 f"(python evaluate.py --ckpt {os.path.join(self.folder, 'best.pt')} --split test)")
        return {"best": best, "rows": rows}
