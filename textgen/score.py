"""Held-out log-likelihoods of a run's network (NumPy only): the scoring under ``evaluate`` and
``classify``.

The state is carried through the text: the text is cut into ``STREAMS`` contiguous streams run
as one batch, each stream's first token only a context. Losses are in nats per token.
"""

from __future__ import annotations

import numpy as np

from .sample import Network

STREAMS = 32


def row_logliks(net: Network, grid: np.ndarray, style=None) -> np.ndarray:
    """Log-likelihood (nats) of each row of ``grid`` (B x L ids) after its first token, the
    state carried along the row; ``style``: one style id, or one per row."""
    grid = np.asarray(grid, dtype=np.int64)
    rows = np.arange(len(grid))
    state = net.initial_state(len(grid))
    total = np.zeros(len(grid))
    for t in range(grid.shape[1] - 1):
        logits, state = net.step(grid[:, t], state, style)
        logits = logits.astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        total += logits[rows, grid[:, t + 1]] - logz
    return total


def heldout_total(net: Network, ids: np.ndarray, streams: int = STREAMS,
                  style: int | None = None) -> tuple[float, int]:
    """(Summed cross-entropy in nats, number of tokens scored) over ``ids``, cut into
    ``streams`` contiguous rows run as one batch."""
    ids = np.asarray(ids, dtype=np.int64)
    streams = max(1, min(streams, len(ids) // 2))
    length = len(ids) // streams
    grid = ids[: length * streams].reshape(streams, length)
    return float(-row_logliks(net, grid, style).sum()), streams * (length - 1)


def heldout_loss(net: Network, ids: np.ndarray, streams: int = STREAMS,
                 style: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) over ``ids``, state carried along the text."""
    total, count = heldout_total(net, ids, streams, style)
    return total / count


def model_loss(net: Network, ids: np.ndarray, segments: np.ndarray | None) -> float:
    """heldout_loss, or with style ``segments`` the mean over each style's part scored with
    its own style."""
    if segments is None:
        return heldout_loss(net, ids)
    bounds = [*map(int, segments), len(ids)]
    parts = [heldout_total(net, ids[a:b], style=i)
             for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if b - a >= 2]
    return sum(t for t, _ in parts) / sum(c for _, c in parts)
