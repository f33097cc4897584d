"""Real laws and a real encoder for bench/gpu_check.sh, within what travels to a GPU machine (64 MB in all):
the first `--laws` training and `--val-laws` validation laws of EURLEX57K (the shared files are shuffled, so a
prefix is a fair sample) and MiniLM's weights in half precision (45 MB; the encoder, ours and the Trainer's,
loads them in fp32, as mixed precision keeps fp32 master weights).

    python bench/gpu_payload.py bench/payload                # 8,000 + 1,000 laws and MiniLM: 51.6 MB
    bash bench/gpu_check.sh OUT laws                         # on the GPU machine, with bench/payload carried

Writes DIR/laws/{train,validation}.jsonl.gz (the shared rows, unchanged) and DIR/model (a Hugging Face folder:
the encoder's config, its fp16 weights and its tokenizer). Refuses, writing nothing, past `--max-mb`.
"""
import argparse
import gzip
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def first_lines(source: str, target: str, n: int) -> int:
    """The first `n` lines of a gzipped file into another, byte for byte -> how many there were."""
    with gzip.open(source, "rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        count = 0
        for line in src:
            if count == n:
                break
            dst.write(line)
            count += 1
    return count


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the folder to write (bench/payload travels with `run --carry bench/payload`)")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--model", default="minilm", help="an alias, a local folder or a hub id (model/__init__.py)")
    p.add_argument("--laws", type=int, default=8000)
    p.add_argument("--val-laws", type=int, default=1000)
    p.add_argument("--max-mb", type=float, default=56.0, help="what may travel besides the repository itself")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModel, AutoTokenizer

    from model.encoders import resolve_model

    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".payload-", dir=parent)
    try:
        os.makedirs(os.path.join(staging, "laws"))
        for split, n in (("train", args.laws), ("validation", args.val_laws)):
            source = os.path.join(args.data, f"{split}.jsonl.gz")
            if not os.path.isfile(source):
                raise SystemExit(f"gpu_payload: {source}: no such file (--data is a folder with train.jsonl.gz "
                                 f"and validation.jsonl.gz)")
            got = first_lines(source, os.path.join(staging, "laws", f"{split}.jsonl.gz"), n)
            print(f"{split}: {got} laws from {source}")
        path = resolve_model(args.model)
        encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
        encoder.to(torch.float16).save_pretrained(os.path.join(staging, "model"))
        AutoTokenizer.from_pretrained(path).save_pretrained(os.path.join(staging, "model"))
        size = folder_bytes(staging) / 2 ** 20
        if size > args.max_mb:
            raise SystemExit(f"gpu_payload: {size:.1f} MB is over --max-mb {args.max_mb:g}: lower --laws")
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.replace(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{args.out}: {size:.1f} MB ({args.model} in fp16, {sum(p.numel() for p in encoder.parameters()) / 1e6:.1f}M "
          f"parameters)")


if __name__ == "__main__":
    main()
