"""The hash types, one registry: a ``SignalType`` per kind of perceptual hash (python-threatexchange's idea).

Each entry says how its value is computed from an image's frames, what a valid value looks like, the default
match distance and its bounds, and which index finds near values. Banks, the matcher, CSV import/export, the
CLI and the API iterate over ``SIGNAL_TYPES``; adding a hash type is adding an entry here (values are stored
by type name in JSON columns, so no column per type).

- ``pdq``: PDQ, 256 bits (the format platforms exchange through ThreatExchange); one value per frame.
- ``phash``: pHash, 64 bits; survives crops that move PDQ far. One value per frame.
- ``vpdq``: the frame-level hash of an animation (vPDQ-style): the PDQ of every distinct frame, matched by
  the share of the upload's frames found in the banked animation, so an animated meme re-encoded, resized,
  trimmed or with its frames sampled differently is recognised as a whole.

Frames are hashed once (``hash_frames``: PDQ with its quality, and pHash) and every type derives its values
from those. A frame whose PDQ quality is below ``MIN_QUALITY`` (flat, nearly blank) is never matched: such
hashes collide with each other. Computing needs the CPU extra (numpy, pdqhash, imagehash), imported on use,
so API nodes can validate values without it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from PIL import Image

MAX_SIDE = 512  # frames are scaled down to this before hashing (both hashes read a small luminance image)
MIN_QUALITY = 50


class SignalError(ValueError):
    """A hash value or type refused: unknown type, malformed value, distance out of bounds."""


@dataclass(frozen=True)
class FrameHash:
    """One frame's primitive hashes as integers, computed once and shared by every signal type."""

    pdq: int
    quality: int
    phash: int

    @property
    def matchable(self) -> bool:
        return self.quality >= MIN_QUALITY


def hash_frame(frame: Image.Image) -> FrameHash:
    """PDQ (with its quality) and pHash of one frame, scaled so its longer side is at most ``MAX_SIDE``."""
    import imagehash
    import numpy as np
    import pdqhash

    small = frame.convert("RGB")
    small.thumbnail((MAX_SIDE, MAX_SIDE))
    bits, quality = pdqhash.compute(np.asarray(small))
    return FrameHash(_bits_to_int(bits), int(quality), _bits_to_int(imagehash.phash(small).hash))


def hash_frames(frames: Sequence[Image.Image]) -> list[FrameHash]:
    return [hash_frame(frame) for frame in frames]


class SignalIndex(Protocol):
    """Near-value search over one type's values, by caller-chosen integer ids."""

    def __len__(self) -> int: ...

    def add(self, items: list[tuple[int, str]]) -> None: ...

    def remove(self, ids: list[int]) -> None: ...

    def compact(self) -> None: ...

    def search(self, value: str, radius: int) -> list[tuple[int, int]]:
        """(id, distance) of every stored value within ``radius``, nearest first."""
        ...


class SignalType(ABC):
    """One kind of hash: its name, value format, distances, how it is computed and how it is indexed."""

    name: ClassVar[str]
    title: ClassVar[str]
    pattern: ClassVar[str]  # a valid value, as a regular expression (also the API's JSON Schema pattern)
    default_distance: ClassVar[int]
    max_distance: ClassVar[int]

    def validate(self, value: str) -> str:
        """The value itself when well-formed (exactly: lower-case hex, no padding), else ``SignalError``
        naming what is wrong. Readers of looser formats (CSV) normalise before they validate."""
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise SignalError(f"{self.title} value {str(value)[:70]!r} is not {self.describe()}")
        return value

    def check_distance(self, distance: int) -> int:
        """Bounded, so a typo cannot make a bank match everything."""
        if isinstance(distance, bool) or not 0 <= int(distance) <= self.max_distance:
            raise SignalError(f"{self.title} match distance {distance!r} is outside 0..{self.max_distance}")
        return int(distance)

    @abstractmethod
    def describe(self) -> str:
        """What a valid value is, in words (error messages, docs)."""

    @abstractmethod
    def stored(self, frames: Sequence[FrameHash]) -> str | None:
        """The value kept for an image (a bank entry, a job's fingerprint); None: this type has none."""

    @abstractmethod
    def queries(self, frames: Sequence[FrameHash]) -> list[str]:
        """The values an upload is looked up by (matchable frames only)."""

    @abstractmethod
    def index(self) -> SignalIndex:
        """An empty index for this type's values."""


class FrameSignal(SignalType):
    """A hash of one frame: an image is stored by its first frame; an upload is looked up by each sampled
    frame (so any frame of an animated upload can match a banked still)."""

    bits: ClassVar[int]

    @abstractmethod
    def of(self, frame: FrameHash) -> int: ...

    def describe(self) -> str:
        return f"{self.bits // 4} lower-case hex digits"

    def hex(self, frame: FrameHash) -> str:
        return f"{self.of(frame):0{self.bits // 4}x}"

    def stored(self, frames: Sequence[FrameHash]) -> str | None:
        return self.hex(frames[0]) if frames else None

    def queries(self, frames: Sequence[FrameHash]) -> list[str]:
        return list(dict.fromkeys(self.hex(f) for f in frames if f.matchable))

    def index(self) -> SignalIndex:
        from banks.index import HammingIndex

        return HammingIndex(self.bits)


class Pdq(FrameSignal):
    name, title, bits = "pdq", "PDQ", 256
    pattern = "[0-9a-f]{64}"
    default_distance, max_distance = 31, 64

    def of(self, frame: FrameHash) -> int:
        return frame.pdq


class PHash(FrameSignal):
    name, title, bits = "phash", "pHash", 64
    pattern = "[0-9a-f]{16}"
    default_distance, max_distance = 8, 16

    def of(self, frame: FrameHash) -> int:
        return frame.phash


class Vpdq(SignalType):
    """An animation as the PDQ hashes of its distinct matchable frames, in order, space-separated. A banked
    animation matches an upload when at least ``MATCH_SHARE`` of the upload's frames are each within the
    bank's distance of some banked frame (the distance reported is the one at which that share is reached).
    Only animations (``MIN_FRAMES`` distinct frames or more) carry one; a still is PDQ's business."""

    name, title = "vpdq", "vPDQ"
    pattern = "[0-9a-f]{64}( [0-9a-f]{64}){1,255}"
    default_distance, max_distance = 31, 64
    MATCH_SHARE = 0.8
    MIN_FRAMES = 2
    MAX_FRAMES = 256

    def describe(self) -> str:
        return f"{self.MIN_FRAMES}..{self.MAX_FRAMES} PDQ hashes (64 lower-case hex digits) separated by spaces"

    def stored(self, frames: Sequence[FrameHash]) -> str | None:
        distinct = list(dict.fromkeys(f"{f.pdq:064x}" for f in frames if f.matchable))[: self.MAX_FRAMES]
        return " ".join(distinct) if len(distinct) >= self.MIN_FRAMES else None

    def queries(self, frames: Sequence[FrameHash]) -> list[str]:
        value = self.stored(frames)
        return [value] if value is not None else []

    def index(self) -> SignalIndex:
        from banks.index import FrameSetIndex

        return FrameSetIndex(self.MATCH_SHARE, self.MAX_FRAMES)


SIGNAL_TYPES: dict[str, SignalType] = {t.name: t for t in (Pdq(), PHash(), Vpdq())}


def signal_type(name: str) -> SignalType:
    try:
        return SIGNAL_TYPES[name]
    except KeyError:
        raise SignalError(f"unknown hash type {name!r}: one of {', '.join(SIGNAL_TYPES)}") from None


def compute(frames: Sequence[FrameHash]) -> dict[str, str]:
    """Every type's stored value for an image's hashed frames (types without one left out)."""
    return {t.name: value for t in SIGNAL_TYPES.values() if (value := t.stored(frames)) is not None}


def validate_signals(signals: dict[str, str]) -> dict[str, str]:
    """Known types, well-formed values, at least one: the signals of a bank entry as stored."""
    if not signals:
        raise SignalError(f"a hash needs a value of at least one type ({', '.join(SIGNAL_TYPES)})")
    return {name: signal_type(name).validate(value) for name, value in signals.items()}


def validate_distances(distances: dict[str, int]) -> dict[str, int]:
    return {name: signal_type(name).check_distance(value) for name, value in distances.items()}


def default_distances() -> dict[str, int]:
    return {t.name: t.default_distance for t in SIGNAL_TYPES.values()}


def _bits_to_int(bits: object) -> int:
    import numpy as np

    return int("".join("1" if b else "0" for b in np.asarray(bits).ravel()), 2)
