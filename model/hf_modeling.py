"""The classifier as a transformers model, for exported folders whose pooling no transformers class reproduces (mean
pooling; CLS pooling on families whose head is not tanh). export.py copies this file into the folder as
`modeling_multilabel.py`, so it imports only torch, transformers and model/fused_head.py (copied beside it):
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` runs it. The config has a model type of its own, so loading
without trust_remote_code fails with transformers' own message instead of silently building another class."""
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .fused_head import FusedHead

TFIDF_INPUTS = ("this model reads each text's TF-IDF vector too: pass tfidf_ids and tfidf_values (in the model's "
                "folder: sys.path.insert(0, folder); from tfidf import TfidfVocabulary; "
                "tfidf_ids, tfidf_values = TfidfVocabulary.load(folder).batch(texts))")


class MultiLabelEncoderConfig(PretrainedConfig):
    model_type = "multilabel-encoder"

    def __init__(self, encoder_config: dict | None = None, pooling: str = "mean", tfidf_size: int | None = None,
                 chunk_pool: str = "max", tfidf_kept: int = 0, **kwargs):
        self.encoder_config = dict(encoder_config or {"model_type": "bert"})
        self.pooling, self.tfidf_size, self.chunk_pool = pooling, tfidf_size, chunk_pool
        self.tfidf_kept = tfidf_kept  # the fused head's sparse TF-IDF weights: how many the folder holds
        kwargs.setdefault("problem_type", "multi_label_classification")
        super().__init__(**kwargs)

    def encoder(self):
        fields = dict(self.encoder_config)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)


class MultiLabelEncoderClassifier(PreTrainedModel):
    """Encoder -> mean (over the attention mask) or first-token pooling -> linear head; logits out, which
    problem_type multi_label_classification tells the pipeline to pass through a sigmoid. With `tfidf_size` the
    head is the fused one (fused_head.py, beside this file): it reads the pooled embedding and the text's TF-IDF
    vector (`tfidf_ids`, `tfidf_values`), which the caller computes with the folder's tfidf.py."""
    config_class = MultiLabelEncoderConfig
    base_model_prefix = "encoder"

    def __init__(self, config: MultiLabelEncoderConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder())
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None
        self.head = nn.Linear(self.encoder.config.hidden_size, config.num_labels)
        self.fused = None if config.tfidf_size is None else FusedHead(
            config.tfidf_size, self.encoder.config.hidden_size, config.num_labels,
            tfidf_kept=config.tfidf_kept)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and module is getattr(self, "head", None):
            module.weight.data.normal_(0.0, 0.02)
            module.bias.data.zero_()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, tfidf_ids=None,
                tfidf_values=None, **kwargs):
        if self.fused is not None and (tfidf_ids is None or tfidf_values is None):
            raise ValueError(TFIDF_INPUTS)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state.float()
        if self.config.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        if self.fused is not None:
            logits = self.fused(pooled, tfidf_ids, tfidf_values)
        else:
            logits = self.head(pooled.to(self.head.weight.dtype))
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)
