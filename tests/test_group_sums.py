"""The compiled per-batch sums (_group_sums.c) and their numpy twin give the same groups, in
the same order, with the same bytes, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.requirements import missing
from traffic_capture import windows
from traffic_capture.rules import CLASSES

# Few distinct values, so that clients repeat, and IPv4 and IPv6 clients share low halves.
HALVES = st.sampled_from([0, 1, 2, 2**32 - 1, 2**63, 2**64 - 1])


def compiled() -> object:
    if windows.compiled_group_sums is None:
        missing("no compiled group sums on this machine (a C compiler, then pip install -e .)")
    return windows.compiled_group_sums


def test_the_compiled_group_sums_were_built() -> None:
    """CI machines have a C compiler: the fast path must be the one tested and measured."""
    assert windows.compiled_group_sums is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), HALVES, HALVES, st.booleans(),
                          st.integers(0, len(CLASSES) - 1), st.integers(0, 2**40)),
                max_size=300), st.integers(0, 2**64 - 1))
def test_compiled_and_numpy_group_sums_agree(packets: list[tuple], seed: int) -> None:
    columns = list(zip(*packets, strict=True)) if packets else [()] * 6
    dtypes = (bool, np.uint64, np.uint64, bool, np.int64, np.int64)
    arrays = [np.array(column, dtype=dtype) for column, dtype in zip(columns, dtypes,
                                                                      strict=True)]
    results = []
    for group_sums in (compiled(), windows.python_group_sums):
        first = np.full(len(packets), -5, dtype=np.int64)
        counts = np.full((len(packets), len(CLASSES)), -5, dtype=np.int64)
        groups = group_sums(*arrays, first, counts, len(CLASSES),  # type: ignore[operator]
                            seed)
        results.append((groups, first[:groups].tolist(), counts[:groups].tolist()))
    assert results[0] == results[1]
    groups, first, counts = results[0]
    assert sum(map(sum, counts)) == sum(int(p[5]) for p in packets)  # every byte, once
    assert groups == len({(p[0], p[1], p[2], p[3]) for p in packets})


@pytest.mark.parametrize("bad_class", [-1, len(CLASSES)])
def test_a_class_out_of_range_is_refused_by_both(bad_class: int) -> None:
    arrays = [np.zeros(2, dtype=bool), np.zeros(2, dtype=np.uint64), np.zeros(2, dtype=np.uint64),
              np.zeros(2, dtype=bool), np.array([0, bad_class]), np.ones(2, dtype=np.int64)]
    for group_sums in (compiled(), windows.python_group_sums):
        with pytest.raises(ValueError, match="out of range"):
            group_sums(*arrays, np.empty(2, dtype=np.int64),  # type: ignore[operator]
                       np.empty((2, len(CLASSES)), dtype=np.int64), len(CLASSES), 1)
