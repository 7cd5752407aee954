"""Progress for the single-process commands that used to run for minutes in silence: `pltd calibrate`
(dlib embeds every pair image) and `pltd eval verification` (a network embeds every image and its
mirror). Bars go to stderr, so a report printed on stdout stays clean, and vanish when done.

The work is cut into chunks on this side of the call — pairs for calibration, image batches for
verification — without changing the functions that compute: embeddings are per image, so chunking
does not change a number (`tests/pipeline/test_cli_ux.py` compares against the unchunked call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

CALIBRATION_CHUNK_PAIRS = 10
EMBED_CHUNK_IMAGES = 256


@contextlib.contextmanager
def bar(what: str, total: int, console: Console) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; nothing is drawn when `console` is quiet."""
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=console.quiet) as p:
        task = p.add_task(what, total=total)
        yield lambda n: p.advance(task, n)


def pair_cosines(bins: list[bytes], network, landmarker, advance: Callable[[int], None]) -> np.ndarray:
    """`calibrate.pair_similarities` over the pair file, a few pairs at a time."""
    from pltd.stages.identities.calibrate import pair_similarities

    out = []
    step = 2 * CALIBRATION_CHUNK_PAIRS
    for s in range(0, len(bins), step):
        out.append(pair_similarities(bins[s : s + step], network, landmarker))
        advance(len(out[-1]))
    return np.concatenate(out) if out else np.zeros(0)


class EmbeddingProgress:
    """An `EvalModel` whose `embed_with_flip` runs in batches and reports each (verification's use)."""

    def __init__(self, model, console: Console):
        self.model, self.console = model, console

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def embed_with_flip(self, images: np.ndarray) -> np.ndarray:
        with bar(f"embedding {len(images):,} images + mirrors", len(images), self.console) as advance:
            parts = []
            for s in range(0, len(images), EMBED_CHUNK_IMAGES):
                parts.append(self.model.embed_with_flip(images[s : s + EMBED_CHUNK_IMAGES]))
                advance(len(parts[-1]))
        return np.concatenate(parts)
