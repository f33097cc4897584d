"""torch.compile as a run or an evaluation uses it: the mode --compile resolves to on a device, and the compiled
module with dynamic shapes."""
import torch

def compiled_module(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """torch.compile with dynamic shapes from the start (TrainState.compile says why), in `mode`."""
    return torch.compile(module, dynamic=True, **({} if mode == "default" else {"mode": mode}))


def compile_plan(cfg: dict, device: torch.device) -> str:
    """The torch.compile mode `--compile` and `--compile-mode` resolve to on `device`, or "off". auto compiles on a
    GPU, where an eager step leaves it waiting on the host's kernel launches and CUDA graphs (reduce-overhead)
    trained several times faster on an H100 (docs/results.md, GPU check), unless --long-doc chunk, whose batches hold a
    varying number of windows and so would record ever more graphs; on a CPU the eager fast paths are faster."""
    cuda = device.type == "cuda"
    if cfg["compile"] == "off" or (cfg["compile"] == "auto" and (not cuda or cfg["long_doc"] == "chunk")):
        return "off"
    return ("reduce-overhead" if cuda else "default") if cfg["compile_mode"] == "auto" else cfg["compile_mode"]
