"""The multi-index-hashing index must return exactly what a brute-force popcount returns."""

from __future__ import annotations

import numpy as np
import pytest

from banks.index import COMPACT_AFTER, MultiIndexHash, brute_force, to_words

RNG = np.random.default_rng(3)


def random_rows(n: int, words: int) -> np.ndarray:
    return RNG.integers(0, np.iinfo(np.uint64).max, size=(n, words), dtype=np.uint64, endpoint=True)


def flip(row: np.ndarray, bits: int) -> np.ndarray:
    out = row.copy()
    for bit in RNG.choice(out.size * 64, bits, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


@pytest.mark.parametrize(("bits", "radius"), [(256, 31), (256, 20), (64, 8), (64, 10), (64, 14)])
def test_index_agrees_with_brute_force(bits: int, radius: int) -> None:
    rows, ids = random_rows(5000, bits // 64), np.arange(5000) * 7
    index = MultiIndexHash(bits)
    index.build(ids, rows)
    for _ in range(60):
        query = flip(rows[RNG.integers(5000)], int(RNG.integers(0, radius + 4)))
        assert index.search(query, radius) == brute_force(rows, ids, query, radius)


def test_incremental_add_remove_and_compact_keep_answers_exact() -> None:
    rows = random_rows(1000, 4)
    index = MultiIndexHash(256)
    index.build(np.arange(1000), rows)
    extra = np.vstack([flip(rows[0], 5), flip(rows[1], 40)])
    index.add(np.array([5000, 5001]), extra)
    assert (5000, 5) in index.search(rows[0], 31) and 5001 not in {i for i, _ in index.search(rows[1], 31)}
    index.remove([0, 5000])
    assert [i for i, _ in index.search(rows[0], 31)] == []
    index.add(np.arange(10_000, 10_000 + COMPACT_AFTER + 1), random_rows(COMPACT_AFTER + 1, 4))  # compacts
    assert len(index) == 1000 + 2 + COMPACT_AFTER + 1 - 2
    assert index.search(rows[2], 0) == [(2, 0)]


def test_hex_words_round_trip() -> None:
    value = int("f" * 16 + "0" * 48, 16)
    assert list(to_words(value, 256)) == [2**64 - 1, 0, 0, 0]
