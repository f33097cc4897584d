"""Long documents from the shared SemEval tweets, for bench/speed.py: each document joins `--tweets MIN MAX`
tweets (labelled with the union of their labels), so that every one runs past the window.

    python bench/long_docs.py /tmp/long --docs 400 --tweets 20 30     # about 550 to 850 MiniLM/MPNet tokens
    python bench/speed.py --data /tmp/long --model MODEL_FOLDER --max-length 512 --variants abcd

Writes OUT/train.tsv and OUT/validation.tsv (a tenth as many documents, other tweets drawn with another seed).
"""
import argparse
import os

from memory import write_documents


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--tweets", type=int, nargs=2, default=(20, 30), metavar=("MIN", "MAX"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    low, high = args.tweets
    write_documents(os.path.join(args.out, "train.tsv"), args.docs, seed=0, max_tweets=high, min_tweets=low)
    write_documents(os.path.join(args.out, "validation.tsv"), max(1, args.docs // 10), seed=1, max_tweets=high,
                    min_tweets=low)


if __name__ == "__main__":
    main()
