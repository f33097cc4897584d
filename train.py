"""Fine-tune a BERT-family encoder for multi-label text classification. Every flag, its default and its rule on
resume is a field of engine/settings.py; the run itself is engine/training/trainer.py, imported once the flags have parsed.

    python train.py --epochs 50 --lr 2e-5                       # MultiEURLEX (hub), bert-base-uncased
    python train.py --model minilm --data ../shared/data/semeval2018_ec --epochs 5
    torchrun --nproc-per-node 4 train.py ...                     # data parallel, one process per GPU
"""
from engine.config import parse_flags
from engine.settings import TRAIN_FIELDS


def main(argv=None) -> dict:
    given = parse_flags(TRAIN_FIELDS, argv, "Fine-tune a BERT-family encoder for multi-label classification.")
    from engine.training.trainer import train_from_flags

    return train_from_flags(given)


if __name__ == "__main__":
    main()
