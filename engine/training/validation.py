"""An epoch's validation: the metrics at --threshold, thresholds tuned on the same predictions, both heads scored
where the fused head is fitted, and each level's metrics with a hierarchy."""
import time

from engine.metrics import binarize, f1_scores, multilabel_metrics
from engine.predictions import collect_probabilities
from engine.thresholds import tune_thresholds_by_level
from engine.training.head_fit import score_heads
from engine.training.run_data import RunData

def validate(state, data: RunData, loss_fn, cfg: dict, logger) -> tuple[dict, dict]:
    """Validation metrics at --threshold, thresholds tuned on these predictions and the F1 they reach
    (`tuned_*`: per label, `global_*`: one for all), the seconds it took, and the TensorBoard details. With a fitted
    fused head both heads are scored (engine/training/head_fit.py, `score_heads`): the one that predicts gets these metrics,
    the other its headline ones under its name (`encoder_micro_f1`, or `fused_micro_f1`). With a hierarchy the
    probabilities are rolled up (data/hierarchy.py) and each level is scored too."""
    start = time.perf_counter()
    hierarchy = data.hierarchy
    probs, targets, loss = collect_probabilities(state.eval_model, data.val_loader, state.device, state.amp_dtype,
                                                 loss_fn, hierarchy)
    metrics = {"loss": loss, **multilabel_metrics(probs, targets, cfg["threshold"], hierarchy)}
    if state.model.fused is not None and state.model.fused.ready:
        probs, metrics = score_heads(state, data.val_loader, loss_fn, cfg, probs, metrics, hierarchy)
    thresholds = tune_thresholds_by_level(probs, targets, hierarchy.levels if hierarchy else None,
                                          cfg["tune_objective"], cfg["tune_min_positives"], fallback=cfg["tune_fallback"])
    metrics.update({f"tuned_{k}": v for k, v in f1_scores(probs, targets, thresholds["per_label"], hierarchy).items()})
    metrics.update({f"global_{k}": v for k, v in f1_scores(probs, targets, thresholds["global"], hierarchy).items()})
    metrics["global_threshold"] = thresholds["global"]
    metrics.update(examples=len(probs), seconds=time.perf_counter() - start)
    logger.validation_details(probs, targets, data.label_names, data.splits["validation"],
                              binarize(probs, cfg["threshold"], hierarchy), state.progress["step"])
    return metrics, thresholds
