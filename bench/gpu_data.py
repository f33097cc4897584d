"""A random-weight BERT and synthetic documents for speed checks where no model or data can be downloaded.

    python bench/gpu_data.py OUT_DIR            # bert-base's shape (12 x 768); 2,000 + 2,048 long and short docs
    python bench/gpu_data.py OUT_DIR --layers 2 --hidden 64 --docs 200 --val-docs 32
    python bench/gpu_data.py OUT_DIR --family mpnet --model-only   # OUT_DIR/model-mpnet: MPNet of that shape

Writes OUT_DIR/model (a Hugging Face folder: BertConfig, random weights, a word-level vocab of 30,522 entries),
OUT_DIR/long/{train,validation}.tsv (every document 400 to 700 words: truncated at 300 tokens, as MultiEURLEX's
laws are) and OUT_DIR/short/{train,validation}.tsv (10 to 60 words, tweet-like). Eleven labels, each tied to
its own keywords. Speed does not depend on the weights, so random ones measure what bert-base-uncased would.
"""
import argparse
import os
import random

LABELS = [f"label{i}" for i in range(11)]


def write_model(folder, layers, hidden, vocab_size=30522, family="bert"):
    from transformers import AutoConfig, AutoModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_size - 5)]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    BertTokenizer(os.path.join(folder, "vocab.txt"), model_max_length=512).save_pretrained(folder)
    positions = {"max_position_embeddings": 514} if family == "mpnet" else {}  # MPNet counts from the pad id + 1
    config = AutoConfig.for_model(family, vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, pad_token_id=0,
                                  **positions)
    AutoModel.from_config(config).save_pretrained(folder)
    return len(vocab)


def write_documents(path, n, low, high, vocab_size, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(["id", "text", *LABELS]) + "\n")
        for i in range(n):
            labels = [j for j in range(len(LABELS)) if rng.random() < 0.2]
            words = [f"w{rng.randrange(100, vocab_size - 5)}" for _ in range(rng.randint(low, high))]
            for j in labels:  # each label's keyword, somewhere in the first 250 words
                words[rng.randrange(min(250, len(words)))] = f"w{10 + j}"
            f.write("\t".join([f"doc{i}", " ".join(words), *("1" if j in labels else "0" for j in range(len(LABELS)))])
                    + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--docs", type=int, default=2000, help="training documents of each kind")
    p.add_argument("--val-docs", type=int, default=2048, help="validation documents of each kind: a GPU evaluates "
                   "a few hundred in less time than its fixed costs take")
    p.add_argument("--family", choices=["bert", "mpnet"], default="bert",
                   help="the architecture (mpnet: OUT_DIR/model-mpnet, with the same word-level vocab)")
    p.add_argument("--model-only", action="store_true", help="the model folder alone, no documents")
    args = p.parse_args()
    folder = os.path.join(args.out, "model" if args.family == "bert" else f"model-{args.family}")
    vocab_size = write_model(folder, args.layers, args.hidden, family=args.family)
    if args.model_only:
        print(os.path.abspath(folder))
        return
    for kind, low, high, seed in (("long", 400, 700, 1), ("short", 10, 60, 2)):
        write_documents(os.path.join(args.out, kind, "train.tsv"), args.docs, low, high, vocab_size, seed)
        write_documents(os.path.join(args.out, kind, "validation.tsv"), args.val_docs, low, high, vocab_size, seed + 10)
    print(os.path.abspath(args.out))


if __name__ == "__main__":
    main()
