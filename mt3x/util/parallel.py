"""One parallel map with a progress bar, for the dataset and cache builders."""

from __future__ import annotations

import multiprocessing
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(func: Callable[[T], R], items: Sequence[T], jobs: int, *, desc: str,
                 progress: bool, unit: str = "item") -> Iterator[R]:
    """`func` over `items`, yielding results as they finish (completion order when `jobs` > 1).

    With `jobs` <= 1 runs in this process, in order; else (even for one item) in a pool of up
    to `jobs` "spawn" processes: no state inherited from this process, so JAX/TensorFlow threads
    stay out of the workers and results do not depend on what the parent did before. `func` and
    the items must be picklable. The bar (tqdm, `leave=False`) is closed however the caller stops.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, leave=False)
    try:
        if jobs <= 1 or not items:
            for item in items:
                yield func(item)
                bar.update()
            return
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes=min(jobs, len(items))) as pool:
            for result in pool.imap_unordered(func, items):
                yield result
                bar.update()
    finally:
        bar.close()
