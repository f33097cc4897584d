"""Any Hugging Face encoder family works with the defaults: tiny random models of each train through train.py and
are evaluated from the checkpoint alone; attention falls back to what the architecture runs."""
import pytest
import torch

import evaluate
import train
from conftest import FILLER, KEYWORDS, epochs_of

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
FAMILIES = {  # model_type: (config fields, the attention a CPU run gets with --attention auto)
    "bert": (SMALL, "plain_or_sdpa"),
    "roberta": (SMALL, "plain_or_sdpa"),
    "xlm-roberta": (SMALL, "plain_or_sdpa"),
    "distilbert": ({"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}, "plain_or_sdpa"),
    "electra": ({**SMALL, "embedding_size": 16}, "plain_or_sdpa"),
    "albert": ({**SMALL, "embedding_size": 16}, "plain_or_sdpa"),
    "mpnet": (SMALL, "eager"),  # no attention interface, no SDPA in transformers 5
    "deberta-v2": (SMALL, "eager"),
}


def tiny_encoder(folder, model_type: str, fields: dict) -> str:
    """A random encoder of this family with a word-level BERT tokenizer of the synthetic task's words."""
    from transformers import AutoConfig, AutoModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + [w for ws in KEYWORDS.values() for w in ws]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt"), model_max_length=64).save_pretrained(str(folder))
    config = AutoConfig.for_model(model_type, vocab_size=len(vocab), max_position_embeddings=72, pad_token_id=0,
                                  **fields)
    AutoModel.from_config(config).save_pretrained(str(folder))
    return str(folder)


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
