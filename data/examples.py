"""Examples: ids, texts and the indices of each example's labels, with a fingerprint of what was read."""
import hashlib
from dataclasses import dataclass

@dataclass
class Examples:
    ids: list[str]
    texts: list[str]
    labels: list[list[int]]

    def __len__(self):
        return len(self.texts)

    @classmethod
    def unlabelled(cls, texts: list[str], ids: list[str] | None = None) -> "Examples":
        return cls(ids or [str(i) for i in range(len(texts))], texts, [[] for _ in texts])

    def select(self, indices) -> "Examples":
        return Examples([self.ids[i] for i in indices], [self.texts[i] for i in indices],
                        [self.labels[i] for i in indices])

    def joined(self, other: "Examples") -> "Examples":
        return Examples(self.ids + other.ids, self.texts + other.texts, self.labels + other.labels)

    def fingerprint(self) -> str:
        """A hash of the texts and their labels, in order: a checkpoint keeps it, so that a resume or an evaluation
        of "the validation split" can tell when the data read now is not what the run read."""
        digest = hash_texts(hashlib.sha256(), self.texts)
        digest.update(repr([sorted(labels) for labels in self.labels]).encode())
        return digest.hexdigest()[:32]


def hash_texts(digest, texts):
    """`digest` updated with each text, its length first: no two lists of texts give one stream of bytes."""
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest
