"""Leakage-free split: groups stay whole, shares are respected, time split puts the newest into test."""

from __future__ import annotations

from sobesednik.data.split import Groups, assign_splits


def _groups(count: int) -> Groups:
    groups = Groups()
    for index in range(count):
        groups.add(1000 + index)
    return groups


def test_union_find_joins_and_roots_at_the_oldest():
    groups = _groups(5)
    groups.union(3, 1)
    groups.union(4, 3)
    assert {groups.find(i) for i in (1, 3, 4)} == {1}
    assert groups.find(2) == 2
    groups.touch(4, 5000)
    assert groups.newest_by_root()[1] == 5000


def test_random_split_respects_shares_and_is_seeded():
    groups = _groups(200)
    sizes = dict.fromkeys(range(200), 5)
    splits = assign_splits(groups, sizes, valid=0.1, test=0.1, by="random", seed=1)
    counts = {name: sum(sizes[root] for root, split in splits.items() if split == name) for name in ("valid", "test")}
    assert counts == {"valid": 100, "test": 100}
    assert splits == assign_splits(groups, sizes, valid=0.1, test=0.1, by="random", seed=1)
    assert splits != assign_splits(groups, sizes, valid=0.1, test=0.1, by="random", seed=2)


def test_time_split_puts_newest_groups_into_test_then_valid():
    groups = _groups(10)
    splits = assign_splits(groups, dict.fromkeys(range(10), 1), valid=0.2, test=0.2, by="time", seed=0)
    assert [splits[root] for root in range(10)] == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2


def test_a_single_group_goes_to_train():
    assert assign_splits(_groups(1), {0: 50}, valid=0.1, test=0.1, by="random", seed=0) == {0: "train"}
