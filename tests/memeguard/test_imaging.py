from __future__ import annotations

import pytest

from memeguard.imaging import decode_frames, sample_indices
from tests.helpers.images import animated


@pytest.mark.parametrize(
    ("total", "limit", "expected"), [(1, 8, [0]), (5, 8, [0, 1, 2, 3, 4]), (16, 4, [0, 4, 8, 12]), (10, 3, [0, 3, 6])]
)
def test_frame_sampling_is_bounded_and_spread(total: int, limit: int, expected: list[int]) -> None:
    assert sample_indices(total, limit) == expected


def test_animated_gif_decodes_only_sampled_frames() -> None:
    frames = decode_frames(animated("GIF", 30), max_frames=5)
    assert len(frames) == 5
    assert all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
