"""What padding to buckets costs: the batches of an epoch (length-grouped, as train.py batches them), their real
tokens, and the padded tokens and distinct batch shapes when widths round up to multiples of 1, 8, 16, 32 and 64
(at most --max-length), on the EU laws and on the SemEval tweets.

    python bench/bucket_padding.py                        # MiniLM's tokenizer, 2,000 laws, all 6,154 tweets
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DATA = (("eurlex57k", "domains", 2000), ("semeval2018_ec", None, None))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--max-length", type=int, default=300)
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    args = p.parse_args()
    from data import load_examples
    from data.tokenized import LongDoc, tokenize
    from data.batching import Collator, LengthGroupedBatchSampler
    from model.encoders import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    for name, column, limit in DATA:
        splits, labels = load_examples(os.path.join(args.shared, name), label_column=column,
                                       max_train_samples=limit, log=lambda *a: None)
        examples = tokenize(splits["train"], tokenizer, args.max_length, len(labels), None, LongDoc())
        for batch_size in (16, 64):
            batches = list(LengthGroupedBatchSampler(examples.lengths, batch_size, 0, True))
            real = sum(int(examples.lengths[b].sum()) for b in batches)
            cells = []
            for multiple in (1, 8, 16, 32, 64):
                collate = Collator(examples, 0, multiple, max_width=args.max_length)
                widths = [int(collate.padded(examples.lengths[b]).max()) for b in batches]
                padded = sum(w * len(b) for w, b in zip(widths, batches))
                shapes = len({(w, len(b)) for w, b in zip(widths, batches)})
                cells.append(f"x{multiple}: {padded / real - 1:+.1%} ({shapes} shapes)")
            print(f"{name}, batch {batch_size}, {real / len(examples):.0f} real tokens an example: " + "; ".join(cells),
                  flush=True)


if __name__ == "__main__":
    main()
