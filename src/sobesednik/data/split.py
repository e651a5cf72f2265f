"""Leakage-free train/valid/test split: whole groups of conversations go to one split.

    groups = Groups()
    a, b = groups.add(date), groups.add(date)
    groups.union(a, b)                       # a reply chain joined the two conversations
    split_of_group = assign_splits(groups, samples_per_root, valid=0.05, test=0.05, by="random", seed=0)

A sample shares messages with the other samples of its conversation (one sample's reply is the next one's
context) and with the conversations its reply chain reaches into. `Groups` is a union-find over
conversations; every connected group lands in one split, so no message text is seen in two splits.
`by="random"` shuffles groups with `seed` and fills test, then valid, up to their share of samples;
`by="time"` puts the newest groups into test and the next newest into valid, as a deployed model would
meet them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal

SPLITS = ("train", "valid", "test")
_OVERSHOOT = 1.25  # a random group may take its split up to 25% past its share rather than leave it empty


class Groups:
    """Union-find over conversation indices, each with the unix time of its newest message."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self.newest: list[int] = []

    def add(self, date: int) -> int:
        """A new conversation; returns its index."""
        self._parent.append(len(self._parent))
        self.newest.append(date)
        return len(self._parent) - 1

    def touch(self, index: int, date: int) -> None:
        """Record that conversation `index` has a message at unix time `date`."""
        if date > self.newest[index]:
            self.newest[index] = date

    def find(self, index: int) -> int:
        parent = self._parent
        root = index
        while parent[root] != root:
            root = parent[root]
        while parent[index] != root:  # path compression
            parent[index], index = root, parent[index]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The older root stays the root, so a group's root is its first conversation.
            low, high = sorted((root_a, root_b))
            self._parent[high] = low

    def newest_by_root(self) -> dict[int, int]:
        """Unix time of the newest message of each group, keyed by the group's root."""
        newest: dict[int, int] = {}
        for index, date in enumerate(self.newest):
            root = self.find(index)
            if date > newest.get(root, date - 1):
                newest[root] = date
        return newest

    def __len__(self) -> int:
        return len(self._parent)


def assign_splits(groups: Groups, samples_per_root: Mapping[int, int], *, valid: float, test: float,
                  by: Literal["random", "time"], seed: int) -> dict[int, str]:
    """Split name for every group root that holds samples."""
    roots = sorted(samples_per_root)
    if by == "time":
        # Newest first; groups' newest messages decide, ties broken by root for determinism.
        newest = groups.newest_by_root()
        roots.sort(key=lambda root: (-newest[root], root))
    else:
        random.Random(seed).shuffle(roots)
    total = sum(samples_per_root.values())
    wanted = {"test": test * total, "valid": valid * total}
    taken = {"test": 0, "valid": 0}
    split_of: dict[int, str] = {}
    train_groups = 0
    for position, root in enumerate(roots):
        size = samples_per_root[root]
        split = "train"
        last_chance_for_train = position == len(roots) - 1 and train_groups == 0
        for name in ("test", "valid"):
            if taken[name] >= wanted[name] or last_chance_for_train:
                continue
            if by == "time" or taken[name] + size <= max(wanted[name] * _OVERSHOOT, 1):
                split = name
                break
        if split == "train":
            train_groups += 1
        else:
            taken[split] += size
        split_of[root] = split
    return split_of
