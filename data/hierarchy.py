"""A label hierarchy (`--label-hierarchy FILE`): every level's labels in one label set, each example's labels with
their ancestors, and the roll-up that keeps predictions consistent (a parent at least as probable as its children,
and predicted with them).

A hierarchy file is JSON, in one of two forms:
- child -> parent, any depth: `{"fishery management": "fisheries", "fisheries": "AGRICULTURE"}`; a label whose
  parent is null is a root;
- EUROVOC's (../shared/data/eurlex57k/eurovoc.json): each finest label -> its ancestors, nearest first,
  `{"catch quota": {"microthesaurus": "fisheries", "domain": "AGRICULTURE, FORESTRY AND FISHERIES"}}`.
  There a name is one label per field (52 EUROVOC descriptors share their name with a microthesaurus).
Levels are numbered from the roots: `level_1` (EUROVOC's domains), `level_2`, ... A name found at two levels is
written `name [level_k]` in the label set; the data may give it plainly, which means the finer one.
"""
import json
from collections import defaultdict

import numpy as np

from data.errors import DataError


class Hierarchy:
    """Labels (`names`, plain) with their `parents` (an index, or -1 for a root), ordered by level, then name."""

    def __init__(self, names: list[str], parents: list[int], source: str = ""):
        self.names, self.parents, self.source = list(names), np.asarray(parents, dtype=np.int64), source
        self.depth = np.zeros(len(names), dtype=np.int64)
        for i in range(len(names)):  # parents come before their children
            self.depth[i] = 1 if self.parents[i] < 0 else self.depth[self.parents[i]] + 1
        counts = defaultdict(int)
        for name in self.names:
            counts[name] += 1
        self.label_names = [name if counts[name] == 1 else f"{name} [level_{d}]" for name, d in zip(self.names,
                                                                                                    self.depth)]
        self.levels = {f"level_{d}": np.flatnonzero(self.depth == d)  # `level_1` -> its labels' indices, ...
                       for d in range(1, int(self.depth.max(initial=0)) + 1)}
        # deepest level first: a child's own roll-up is done before its parent is rolled up into the grandparent
        self._up = [(np.flatnonzero(self.depth == d), self.parents[self.depth == d])
                    for d in range(int(self.depth.max(initial=1)), 1, -1)]


    def state(self) -> dict:
        """What a checkpoint and an exported folder keep (plain types)."""
        return {"names": self.names, "parents": self.parents.tolist(), "source": self.source}

    @classmethod
    def from_state(cls, state: dict | None) -> "Hierarchy | None":
        """The hierarchy `state()` gave, or None for a model without one."""
        return None if state is None else cls(state["names"], state["parents"], state.get("source", ""))

    def roll_up(self, matrix: np.ndarray) -> np.ndarray:
        """(documents, labels) probabilities or 0/1 decisions with each parent raised to its children's maximum, so
        that no child outranks its parent and a predicted child brings its ancestors."""
        out = np.array(matrix, copy=True)
        for children, parents in self._up:
            np.maximum.at(out.T, parents, out.T[children])
        return out

    def ancestors_closure(self, labels: list[int]) -> list[int]:
        closed = set()
        for j in labels:
            while j >= 0 and j not in closed:
                closed.add(j)
                j = int(self.parents[j])
        return sorted(closed)

    def encode(self, data_names: list[str], where: str) -> list[int]:
        """The data's label names (finest level, or any level) -> their indices here."""
        plain = {self.names[i]: int(i) for i in np.argsort(self.depth, kind="stable")}  # at two levels: the deeper
        index = {**plain, **{name: i for i, name in enumerate(self.label_names)}}
        missing = [name for name in data_names if name not in index]
        if missing:
            raise DataError(f"{where}: label {missing[0]!r} of the data is not in the hierarchy {self.source}"
                            + (f" ({len(missing)} such labels)" if len(missing) > 1 else ""))
        return [index[name] for name in data_names]

    def inconsistent(self, decisions: np.ndarray) -> int:
        """How many (document, label) decisions name a label without its parent."""
        has_parent = self.parents >= 0
        return int((decisions[:, has_parent] > decisions[:, self.parents[has_parent]]).sum())


def hierarchy_problem(raw, label_names) -> str | None:
    """What makes a checkpoint's or an export's stored hierarchy unusable with its label names, or None."""
    if raw is None:
        return None
    names, parents = (raw.get("names"), raw.get("parents")) if isinstance(raw, dict) else (None, None)
    if not (isinstance(names, list) and isinstance(parents, list) and len(names) == len(parents)
            and all(isinstance(n, str) for n in names)
            and all(isinstance(p, int) and -1 <= p < i for i, p in enumerate(parents))):
        return "its label hierarchy is not a list of names with each parent's index before its own"
    if Hierarchy(names, parents).label_names != list(label_names):
        return "its label hierarchy does not name its labels"
    return None


def read_hierarchy(path: str) -> Hierarchy:
    """The hierarchy file, checked: a label with two parents, a cycle, a value of the wrong shape: one line each."""
    def pairs_hook(pairs):  # a JSON object with a key twice: json.load would keep the last silently
        seen = {}
        for key, value in pairs:
            if key in seen and seen[key] != value:
                raise DataError(f"{path}: label {key!r} has two parents ({_parent_text(seen[key])} and "
                                f"{_parent_text(value)})")
            seen[key] = value
        return seen

    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f, object_pairs_hook=pairs_hook)
    except FileNotFoundError:
        raise DataError(f"--label-hierarchy {path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"--label-hierarchy {path}: is a folder; give the hierarchy's JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: a hierarchy is a JSON object of label -> parent (or label -> its ancestors)")
    nodes = {}  # (field, name) -> parent (field, name) or None
    for child, value in raw.items():
        if value is None or isinstance(value, str):
            chain = [("", child)] + ([("", value)] if value else [])
        elif isinstance(value, dict) and value and all(isinstance(v, str) and v for v in value.values()):
            chain = [("", child)] + list(value.items())
        else:
            raise DataError(f"{path}: label {child!r}: its parent must be a label name, null, or an object of its "
                            f"ancestors' names, nearest first (found {json.dumps(value)[:80]})")
        for node, parent in zip(chain, chain[1:] + [None]):
            if node in nodes and nodes[node] != parent and parent is not None and nodes[node] is not None:
                raise DataError(f"{path}: label {node[1]!r} has two parents ({nodes[node][1]!r} and {parent[1]!r})")
            if nodes.get(node) is None:
                nodes[node] = parent
    for node in nodes:
        path_seen, current = [node], nodes[node]
        while current is not None:
            if current in path_seen:
                cycle = " -> ".join(name for _, name in path_seen[path_seen.index(current):] + [current])
                raise DataError(f"{path}: label {current[1]!r} is its own ancestor ({cycle})")
            path_seen.append(current)
            current = nodes.get(current)
    for parent in {p for p in nodes.values() if p is not None}:
        nodes.setdefault(parent, None)
    depth = {}

    def depth_of(node):
        if node not in depth:
            depth[node] = 1 if nodes[node] is None else depth_of(nodes[node]) + 1
        return depth[node]

    order = sorted(nodes, key=lambda node: (depth_of(node), node[1], node[0]))
    position = {node: i for i, node in enumerate(order)}
    return Hierarchy([name for _, name in order],
                     [-1 if nodes[node] is None else position[nodes[node]] for node in order], path)


def _parent_text(value) -> str:
    return repr(value) if isinstance(value, str) or value is None else json.dumps(value)[:60]
