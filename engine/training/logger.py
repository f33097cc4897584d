"""What a run records: TensorBoard events and one JSON line per epoch, side by side in the run folder."""
import math
import os

import numpy as np

from engine.files import atomic_write, json_text

PR_CURVES = 20


class RunLogger:
    """Only the main process writes; on the others every call does nothing."""

    def __init__(self, output_dir: str, enabled: bool = True, purge_step: int | None = None,
                 records: list[dict] | None = None):
        """`records`: the epochs a resumed run keeps from metrics.jsonl (`purge_step` drops TensorBoard's later
        points)."""
        self.enabled, self.path = enabled, os.path.join(output_dir, "metrics.jsonl")
        self.records = list(records or [])
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(output_dir, purge_step=purge_step)
            if records is not None:
                self._write_records()

    def scalars(self, values: dict, step: int, prefix: str):
        if not self.enabled:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def epoch(self, record: dict, step: int):
        """`record` holds prefixed keys (`train_loss`, `val_micro_f1`): one JSON line, and TensorBoard scalars
        under `val/...` and `train_epoch/...` (`train/...` holds the per-step loss and learning rate)."""
        if not self.enabled:
            return
        self.scalars({k[4:]: v for k, v in record.items() if k.startswith("val_")}, step, "val")
        self.scalars({k[6:]: v for k, v in record.items() if k.startswith("train_")}, step, "train_epoch")
        self.records.append({k: _json_safe(v) for k, v in record.items()})
        self._write_records()
        self.writer.flush()

    def _write_records(self):
        """Rewritten whole and renamed over the old file (a few KB an epoch): a crash never tears a line."""
        atomic_write(self.path, lambda f: f.write("".join(json_text(r) + "\n" for r in self.records).encode()))

    def validation_details(self, probs, targets, label_names, examples, predicted, step: int, shown: int = 8,
                           curves: int = PR_CURVES):
        """Precision-recall curves (all labels pooled, and the `curves` labels with the most validation
        positives: with thousands of labels, one curve each would swell the event file and the epoch's time), and
        the first validation examples with gold and predicted labels."""
        if not self.enabled:
            return
        self.writer.add_pr_curve("pr/all labels", targets.ravel(), probs.ravel(), step)
        for j in np.argsort(-targets.sum(0), kind="stable")[:curves]:
            self.writer.add_pr_curve(f"pr/{label_names[j]}", targets[:, j], probs[:, j], step)
        rows = ["| text | gold | predicted |", "|---|---|---|"]
        for i in range(min(shown, len(examples))):
            text = examples.texts[i].replace("|", "\\|").replace("\n", " ")
            text = text[:300] + ("…" if len(text) > 300 else "")
            gold = ", ".join(label_names[j] for j in examples.labels[i])
            pred = ", ".join(f"{label_names[j]} ({probs[i, j]:.2f})" for j in np.flatnonzero(predicted[i]))
            rows.append(f"| {text} | {gold} | {pred} |")
        self.writer.add_text("val/examples", "\n".join(rows), step)

    def hparams(self, config: dict, metrics: dict):
        """The run's flags beside its final metrics (TensorBoard's HPARAMS view)."""
        if not self.enabled:
            return
        flags = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
        self.writer.add_hparams(flags, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")

    def close(self):
        if self.writer is not None:
            self.writer.close()


def _json_safe(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value
