"""Any Hugging Face encoder family works with the defaults: tiny random models of each train through train.py and
are evaluated from the checkpoint alone; attention falls back to what the architecture runs."""
import pytest
import torch

import evaluate
import train
from conftest import SMALL, epochs_of, tiny_encoder

FAMILIES = {  # model_type: (config fields, the attention a CPU run gets with --attention auto)
    "bert": (SMALL, "plain_or_sdpa"),
    "roberta": (SMALL, "plain_or_sdpa"),
    "xlm-roberta": (SMALL, "plain_or_sdpa"),
    "distilbert": ({"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}, "plain_or_sdpa"),
    "electra": ({**SMALL, "embedding_size": 16}, "plain_or_sdpa"),
    "albert": ({**SMALL, "embedding_size": 16}, "plain_or_sdpa"),
    "mpnet": (SMALL, "plain_or_sdpa"),  # eager in transformers 5; ours runs it (model/mpnet_attention.py)
    "deberta-v2": (SMALL, "eager"),
}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_each_family_trains_with_the_defaults_and_evaluates_from_its_checkpoint(model_type, synthetic_folder,
                                                                                tmp_path):
    fields, attention = FAMILIES[model_type]
    model = tiny_encoder(tmp_path / model_type, model_type, fields)
    out = tmp_path / "run"
    summary = train.main(["--model", model, "--data", synthetic_folder, "--output-dir", str(out), "--epochs", "1",
                          "--max-train-samples", "96", "--max-eval-samples", "48", "--max-length", "32",
                          "--cache-dir", ""])
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["config"]["attention_impl"] == attention
    assert best["encoder_config"]["model_type"] == model_type
    logged = epochs_of(out)[-1]
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--output", str(tmp_path / "m.json")])
    assert summary["best_epoch"] == 1
    for key in ("loss", "micro_f1", "roc_auc_micro"):
        assert result["metrics"][key] == pytest.approx(logged[f"val_{key}"], abs=1e-6), key


def mpnet_against_eager(kernel: str, device: str = "cpu", amp_dtype=None) -> tuple[float, float, float]:
    """A tiny random MPNet with a relative-position bias that matters, run eager and on our attention `kernel`,
    on a padded batch: (largest difference of the outputs, largest difference of the weights' gradients relative
    to their largest entry, largest gradient of the bias). Relative to the largest of all, since some gradients are
    zero but for rounding: a key's bias shifts every score of a query alike, which the softmax cancels."""
    import copy

    from transformers import AutoConfig, AutoModel

    from model import cpu_fast, mpnet_attention

    cpu_fast.register_plain_or_sdpa()
    config = AutoConfig.for_model("mpnet", vocab_size=50, max_position_embeddings=72, pad_token_id=1,
                                  attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0, **SMALL)
    torch.manual_seed(0)
    eager = AutoModel.from_config(config, attn_implementation="eager").to(device)
    with torch.no_grad():
        eager.encoder.relative_attention_bias.weight.normal_(0, 1.0)
    ours = copy.deepcopy(eager)
    assert mpnet_attention.use_fused_attention(ours, kernel)
    ids = torch.randint(5, 50, (3, 20), device=device)
    mask = torch.ones(3, 20, dtype=torch.long, device=device)
    mask[1, 12:], mask[2, 5:] = 0, 0
    weights = torch.randn(1, 20, 32, device=device)
    states, grads = [], []
    for model in (eager, ours):
        with torch.autocast(device, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        (out * mask.unsqueeze(-1) * weights).sum().backward()
        states.append(out.detach())
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    scale = max(grad.abs().max().item() for grad in grads[0].values())
    return ((states[0] - states[1]).abs().max().item(),
            max((grads[0][name] - grads[1][name]).abs().max().item() for name in grads[0]) / scale,
            grads[0]["encoder.relative_attention_bias.weight"].abs().max().item())


@pytest.mark.parametrize("kernel", ["sdpa", "plain_or_sdpa"])
def test_mpnet_on_our_attention_computes_what_its_eager_attention_computes(kernel):
    """Outputs and gradients (the relative-position bias's included) match eager MPNet, with padding; the kernel
    is what build_model gives MPNet, and an old run's `eager` stays eager."""
    from transformers import AutoConfig

    from engine.config import make_config
    from model.classifier import attention_impl, build_model

    output_diff, grad_diff, bias_grad = mpnet_against_eager(kernel)
    assert output_diff < 1e-5 and grad_diff < 1e-4 and bias_grad > 1e-3
    config = {**AutoConfig.for_model("mpnet", **SMALL).to_dict(), "model_type": "mpnet"}
    for attention in (kernel, "eager"):
        model = build_model(make_config(model="unused", attention_impl=attention), 3, config)
        assert attention_impl(model) == attention


def test_a_model_stored_in_half_precision_loads_fp32_weights_to_train(tmp_path):
    from transformers import AutoModel

    from model.encoders import load_encoder

    folder = tiny_encoder(tmp_path / "bert", "bert", SMALL)
    AutoModel.from_pretrained(folder).half().save_pretrained(folder)  # as many hub folders are stored
    assert AutoModel.from_pretrained(folder).dtype == torch.float16  # what transformers 5 loads by itself
    encoder = load_encoder(folder)
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}  # mixed precision keeps fp32 master weights
