"""The CPU fast paths keep the model's meaning: the cheap dropout, the plain-or-SDPA attention, the bf16
residual stream under autocast, and the allocator setting."""
import os
import platform
import subprocess
import sys

import pytest
import torch
from transformers import BertModel

from model.classifier import MultiLabelClassifier
from model.encoders import encoder_from_config
from model.cpu_fast import PLAIN_OR_SDPA, SHORT, Dropout, cheap_dropout, plain_or_sdpa, register_plain_or_sdpa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_p_of_the_elements_and_scales_the_rest(p):
    x = torch.ones(1000, 1000, requires_grad=True)
    y = cheap_dropout(x, p)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.003  # binomial sd 0.0005
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient flows through the same mask, scaled alike


def test_dropout_masks_follow_torchs_rng():
    x = torch.ones(64, 64)
    torch.manual_seed(7)
    first, second = cheap_dropout(x, 0.3), cheap_dropout(x, 0.3)
    torch.manual_seed(7)
    assert torch.equal(cheap_dropout(x, 0.3), first)
    assert not torch.equal(first, second)


def test_dropout_is_the_identity_in_evaluation_and_keeps_the_dtype():
    x = torch.randn(8, 8, dtype=torch.bfloat16)
    assert cheap_dropout(x, 0.1, training=False) is x
    assert cheap_dropout(x, 0.0) is x
    assert cheap_dropout(x, 0.1).dtype == torch.bfloat16
    assert torch.equal(Dropout(0.1).eval()(x), x)


def small_bert(attention: str, max_positions: int = 64):
    torch.manual_seed(0)
    return encoder_from_config({"model_type": "bert", "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "intermediate_size": 64,
                                "max_position_embeddings": max_positions}, attention)


def padded_batch(length: int):
    torch.manual_seed(1)
    ids = torch.randint(5, 50, (3, length))
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, length // 2:] = False
    return ids, mask


@pytest.mark.parametrize("length", [20, SHORT + 72])
@pytest.mark.parametrize("amp", [None, torch.bfloat16])  # plain attention serves short bf16, SDPA the rest
def test_plain_or_sdpa_matches_the_stock_kernels_in_evaluation(length, amp):
    register_plain_or_sdpa()
    ids, mask = padded_batch(length)
    logits = {}
    for attention in ("eager", "sdpa", PLAIN_OR_SDPA):
        model = MultiLabelClassifier(small_bert(attention, max_positions=256), 4).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            logits[attention] = model(ids, mask).float()
    tolerance = 1e-5 if amp is None else 5e-3
    assert torch.allclose(logits[PLAIN_OR_SDPA], logits["eager"], atol=tolerance)
    assert torch.allclose(logits[PLAIN_OR_SDPA], logits["sdpa"], atol=tolerance)


def test_attention_dropout_applies_to_the_probabilities_at_any_length():
    torch.manual_seed(2)
    query, key, value = (torch.randn(2, 2, SHORT + 72, 16) for _ in range(3))
    module = torch.nn.Module()
    output, probs = plain_or_sdpa(module, query, key, value, None, scaling=0.25, dropout=0.5)
    exact = torch.softmax(query @ key.transpose(2, 3) * 0.25, dim=-1)
    kept = probs != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.allclose(probs[kept], 2 * exact[kept])
    assert torch.allclose(output, (probs @ value).transpose(1, 2), atol=1e-5)


def test_the_classifier_trains_reproducibly_with_the_fast_dropout(tiny_bert):
    register_plain_or_sdpa()
    ids, mask = padded_batch(20)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = MultiLabelClassifier(BertModel.from_pretrained(tiny_bert, attn_implementation=PLAIN_OR_SDPA), 4)
        assert not any(type(m) is torch.nn.Dropout for m in model.modules())
        outputs.append(model.train()(ids, mask))
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():
        assert not torch.allclose(outputs[0], model.eval()(ids, mask))  # dropout was on while training


def test_under_cpu_autocast_the_residual_stream_is_bf16_and_close_to_fp32():
    register_plain_or_sdpa()
    ids, mask = padded_batch(20)
    model = MultiLabelClassifier(small_bert(PLAIN_OR_SDPA), 4).eval()
    with torch.no_grad():
        full = model(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(ids, mask)
            assert model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.dtype == torch.bfloat16
        assert model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.dtype == torch.float32
    assert torch.allclose(half.float(), full, atol=0.05)


def test_under_autocast_the_pooling_and_the_head_stay_fp32():
    """A bf16 head rounds logits to 8 bits of mantissa: many examples get tied probabilities."""
    register_plain_or_sdpa()
    ids, mask = padded_batch(20)
    model = MultiLabelClassifier(small_bert(PLAIN_OR_SDPA), 4).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, mask)
        states = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        bf16_head = model.head(states[:, 0])
    assert logits.dtype == torch.float32 and bf16_head.dtype == torch.bfloat16
    assert len(torch.unique(logits)) == logits.numel() > len(torch.unique(bf16_head))


FAULT_PROBE = """
import ctypes, resource, sys, torch
from model.cpu_fast import M_MMAP_THRESHOLD, keep_freed_memory
from model.encoders import encoder_from_config
if sys.argv[1] == "keep":
    assert keep_freed_memory()
else:  # glibc as it starts: blocks over 128 KB mapped afresh (its adaptive threshold, left alone, drifts from
    # run to run: 400 to 5,600 faults a step were seen)
    assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1
torch.manual_seed(0)
model = encoder_from_config({"model_type": "bert", "vocab_size": 1000, "hidden_size": 256, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "intermediate_size": 1024}, "sdpa").train()
optimizer = torch.optim.AdamW(model.parameters())
ids = torch.randint(0, 1000, (16, 64))
for step in range(13):
    if step == 3:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(input_ids=ids).last_hidden_state.mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def page_faults_per_training_step(allocator: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULT_PROBE, allocator], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    fresh, kept = page_faults_per_training_step("fresh"), page_faults_per_training_step("keep")
    assert kept < fresh / 5, (fresh, kept)  # measured: about 40,000 against 0 to 200


RELEASE_PROBE = """
import torch
from model.cpu_fast import keep_freed_memory, release_freed_memory

def resident_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))

assert keep_freed_memory()
blocks = [torch.ones(1_000_000) for _ in range(100)]  # 100 blocks of 4 MB: kept in the heap, not mapped apart
held = resident_mb()
del blocks
freed = resident_mb()
assert release_freed_memory()
print(held, freed, resident_mb())
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/status"),
                    reason="a glibc setting, read from /proc")
def test_memory_freed_in_an_epoch_goes_back_to_the_kernel_between_epochs():
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    held, freed, released = map(float, done.stdout.split())
    assert freed > held - 100, (held, freed)  # kept for reuse while the epoch runs
    assert released < freed - 300, (freed, released)  # handed back between epochs
