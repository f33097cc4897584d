"""A model's logits for a batch of documents, and its probabilities over a whole loader: what training's validation
and serving (evaluate.py, predict.py) both take."""
import numpy as np
import torch
from tqdm import tqdm

from engine.amp import autocast
from engine.distributed import gather_rows, sum_over_ranks

def document_logits(model, batch: dict, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """One row of logits per document of the batch; a chunked document's windows are pooled by the model, and a
    batch with TF-IDF vectors passes them on (a fitted fused head reads them)."""
    moved = {key: None if batch.get(key) is None else batch[key].to(device, non_blocking=non_blocking)
             for key in ("window_doc", "tfidf_ids", "tfidf_values")}
    return model(batch["input_ids"].to(device, non_blocking=non_blocking),
                 batch["attention_mask"].to(device, non_blocking=non_blocking), moved["window_doc"],
                 len(batch["labels"]), batch.get("window_groups"), moved["tfidf_ids"], moved["tfidf_values"])


@torch.no_grad()
def collect_probabilities(model, loader, device, amp_dtype, loss_fn=None,
                          hierarchy=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities and targets for every example of the loader's dataset, in dataset order (batches run
    sorted by length), and the mean loss (of the model's own logits). Under distributed evaluation the ranks' rows
    are gathered. With a `hierarchy` the probabilities are rolled up: no label is more probable than its parent."""
    model.eval()
    rows, probs, targets = [], [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for batch in tqdm(loader, desc="eval", leave=False, dynamic_ncols=True):
        labels = batch["labels"].to(device)
        with autocast(device, amp_dtype):
            logits = document_logits(model, batch, device).float()
        if loss_fn is not None:
            loss_sum += loss_fn(logits, labels) * len(labels)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(batch["labels"].numpy())
        rows.append(batch["index"].numpy())
    rows, probs, targets = (gather_rows(np.concatenate(a)) for a in (rows, probs, targets))
    order = np.argsort(rows, kind="stable")
    probs = probs[order] if hierarchy is None else hierarchy.roll_up(probs[order])
    return probs, targets[order], sum_over_ranks(loss_sum.item()) / max(1, len(rows))
