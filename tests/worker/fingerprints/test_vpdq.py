"""The third hash type, vPDQ: an animation as its frames' PDQ hashes, matched by the share of frames found."""

from __future__ import annotations

import random

import pytest

from banks.signals import SIGNAL_TYPES, FrameHash, SignalError, Vpdq, compute, hash_frames, signal_type
from memeguard.imaging import decode_frames
from tests.helpers.images import animation, scenes

VPDQ = SIGNAL_TYPES["vpdq"]


def frame(pdq: int, quality: int = 100) -> FrameHash:
    return FrameHash(pdq, quality, 0)


def value(*pdqs: int) -> str:
    return " ".join(f"{p:064x}" for p in pdqs)


def test_only_an_animation_of_distinct_usable_frames_carries_a_vpdq() -> None:
    assert "vpdq" not in compute([frame(1)])  # a still is PDQ's business
    assert "vpdq" not in compute([frame(1), frame(1)])  # one picture repeated is a still too
    assert "vpdq" not in compute([frame(1), frame(2, quality=10)])  # a flat frame is never matched
    assert compute([frame(1), frame(2), frame(1)])["vpdq"] == value(1, 2)  # distinct frames, in order
    assert set(compute([frame(1), frame(2)])) == set(SIGNAL_TYPES)


def test_values_are_checked_by_their_type() -> None:
    assert VPDQ.validate(value(1, 2)) == value(1, 2)
    for bad in (value(1), value(0xABC, 0xDEF).upper(), value(1, 2) + " ", "x" * 64 + " " + "0" * 64):
        with pytest.raises(SignalError, match="vPDQ value"):
            VPDQ.validate(bad)
    with pytest.raises(SignalError, match="unknown hash type 'md5'"):
        signal_type("md5")
    with pytest.raises(SignalError, match=r"outside 0\.\.64"):
        VPDQ.check_distance(65)


def test_an_animation_matches_when_enough_of_the_uploads_frames_are_found() -> None:
    """Distance reported = the distance at which MATCH_SHARE of the query frames have a near banked frame."""
    index = VPDQ.index()
    rng = random.Random(0)
    banked = [rng.getrandbits(256) for _ in range(10)]  # ten frames, ~128 bits apart from each other
    index.add([(7, value(*banked)), (8, value(rng.getrandbits(256), rng.getrandbits(256)))])
    trimmed = value(*banked[3:8])
    assert index.search(trimmed, 31) == [(7, 0)]  # every frame of a trimmed copy is in the banked one
    nudged = value(*(b ^ 0b111 for b in banked[:5]))  # re-encoded: each frame 3 bits away
    assert index.search(nudged, 31) == [(7, 3)] and index.search(nudged, 2) == []
    half = value(*banked[:3], *(b ^ (2**64 - 1) for b in banked[3:6]))  # only half the frames are the meme's
    assert index.search(half, 31) == []
    index.remove([7])
    assert index.search(trimmed, 31) == [] and len(index) == 1


def test_a_reencoded_resized_or_trimmed_animation_hashes_near_its_original() -> None:
    """The registry's values of real encodings: GIF -> WebP at half size, and the first frames cut."""
    original = scenes(1, 10)
    banked = compute(hash_frames(decode_frames(animation(original), Vpdq.MAX_FRAMES)))["vpdq"]
    index = VPDQ.index()
    index.add([(1, banked)])
    small = [f.resize((120, 120)) for f in original]
    for copy in (animation(small, "WEBP", quality=60), animation(original[4:])):
        query = VPDQ.queries(hash_frames(decode_frames(copy, 4)))  # a worker samples 4 frames
        assert query and [hit_id for hit_id, _ in index.search(query[0], VPDQ.default_distance)] == [1]
    other = compute(hash_frames(decode_frames(animation(scenes(2, 10)), 4)))["vpdq"]
    assert index.search(other, VPDQ.default_distance) == []
