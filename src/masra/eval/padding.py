"""Ragged per-query lists -> one padded array, so metrics run on all queries at once."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np


def pad_ragged(
    rows: Sequence[Sequence], *, columns: int | None = None, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length rows into a float64 array plus a bool validity mask [Q, W].

    rows: per query a list of numbers (columns=None -> [Q, W]) or of lists of ``columns`` numbers
    (-> [Q, W, columns]); W is the longest row; padded entries hold ``fill``.
    """
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max(initial=0))
    valid = np.arange(width)[None, :] < lengths[:, None]
    item_shape = () if columns is None else (columns,)
    items = chain.from_iterable(rows)
    if columns is not None:
        items = chain.from_iterable(items)
    flat = np.fromiter(items, dtype=np.float64, count=int(lengths.sum()) * (columns or 1)).reshape((-1, *item_shape))
    out = np.full((len(rows), width, *item_shape), fill, dtype=np.float64)
    out[valid] = flat
    return out, valid
