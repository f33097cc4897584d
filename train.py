"""Fine-tune a BERT-family encoder for multi-label text classification. Every flag, its default and its rule on
resume is a field of engine/config.py; the run itself is engine/trainer.py, imported once the flags have parsed.

    python train.py --epochs 50 --lr 2e-5                       # MultiEURLEX (hub), bert-base-uncased
    python train.py --model minilm --data ../shared/data/semeval2018_ec --epochs 5
    torchrun --nproc-per-node 4 train.py ...                     # data parallel, one process per GPU
"""
from engine.config import TRAIN_FIELDS, parse_flags


def main(argv=None) -> dict:
    given = parse_flags(TRAIN_FIELDS, argv, "Fine-tune a BERT-family encoder for multi-label classification.")
    from engine.trainer import train_from_flags  # torch loads here: --help and a misspelt flag have answered

    return train_from_flags(given)


if __name__ == "__main__":
    main()
