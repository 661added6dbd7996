"""Dynamic time warping over a (student × teacher) cost matrix, and its merged steps.

:func:`dtw_path` finds the minimum-cost monotone path through an (n, m) cost (the MinED map and
CDM's contextual DTW both use it); :func:`path_groups` cuts such a path into merged steps, and
:func:`batch_dtw_groups` does both for a padded (B, T_s, T_t) batch at once. Plain numpy arrays
in and out: no ``torch``, no model code.
"""

from __future__ import annotations

import numpy as np

_TIE = 1e-9  # tolerance for ties in DTW back-tracking


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost monotone path (steps (1,0), (0,1), (1,1)) from (0, 0) to (n−1, m−1).

    ``D[j, i] = cost[j, i] + min(D[j−1, i], D[j, i−1], D[j−1, i−1])``; ties prefer the diagonal.
    Any non-negative cost works, e.g. CDM's ``ned * w_s[:, None] * w_t[None, :]``.

    Args:
        cost: (n, m) pairwise costs.

    Returns:
        The path as ``[(j, i), …]``, ``[]`` when n or m is 0.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D (n, m) matrix, got shape {cost.shape}")
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0])
    for j in range(1, n):
        # x_i = c_i + min(u_i, x_{i-1}) with u_i = min(D[j-1, i], D[j-1, i-1]) is a prefix-min:
        # x_i = C_i + min_{k<=i}(u_k - C_{k-1}), C = cumsum(c)  (min-plus scan, vectorised)
        up = acc[j - 1].copy()
        up[1:] = np.minimum(up[1:], acc[j - 1, :-1])
        csum = np.cumsum(cost[j])
        acc[j] = csum + np.minimum.accumulate(up - (csum - cost[j]))
    path, j, i = [(n - 1, m - 1)], n - 1, m - 1
    while j > 0 or i > 0:
        steps = [(j - 1, i - 1), (j - 1, i), (j, i - 1)]
        steps = [(a, b) for a, b in steps if a >= 0 and b >= 0]
        best = min(acc[a, b] for a, b in steps)
        j, i = next((a, b) for a, b in steps if acc[a, b] <= best + _TIE * (1 + abs(best)))
        path.append((j, i))
    return path[::-1]


def path_groups(path: list[tuple[int, int]], n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a DTW path into merged steps: maximal runs joined by horizontal/vertical moves.

    A diagonal move starts a new step; within a step one token of one side meets several of the
    other (many-to-one) or an L-shaped run meets several on both sides. Every token on the path
    belongs to exactly one step, since the path is monotone.

    Args:
        path: ``[(j, i), …]`` from :func:`dtw_path` over an (n, m) cost.
        n: Number of student tokens.
        m: Number of teacher tokens.

    Returns:
        ``(s_gid, t_gid)``: (n,) and (m,) int64 step ids 0..G−1 in path order (−1 if off-path).
    """
    s_gid, t_gid = np.full(n, -1, dtype=np.int64), np.full(m, -1, dtype=np.int64)
    g = -1
    for k, (j, i) in enumerate(path):
        if k == 0 or (j != path[k - 1][0] and i != path[k - 1][1]):
            g += 1
        s_gid[j], t_gid[i] = g, g
    return s_gid, t_gid


def _accumulate(c: np.ndarray) -> np.ndarray:
    """(B, T_s, T_t) accumulated DTW cost, one row at a time for the whole batch.

    The min-plus scan of :func:`dtw_path`; entries beyond a sample's lengths are computed too,
    but no path of that sample reads them.
    """
    acc = np.empty_like(c)
    acc[:, 0] = np.cumsum(c[:, 0], axis=1)
    for j in range(1, c.shape[1]):
        up = acc[:, j - 1].copy()  # (B, T_t)
        up[:, 1:] = np.minimum(up[:, 1:], acc[:, j - 1, :-1])
        csum = np.cumsum(c[:, j], axis=1)
        acc[:, j] = csum + np.minimum.accumulate(up - (csum - c[:, j]), axis=1)
    return acc


def _backtrace(
    acc: np.ndarray, n_len: np.ndarray, m_len: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-trace every sample from its own end cell (ties: diagonal, then up, then left).

    Returns ``(cs, ct, g)``: (B, T_s) and (B, T_t) compact step ids counted from the end (−1 off
    the path) and (B,) the last step id of each sample.
    """
    n_b, t_s, t_t = acc.shape
    j, i = np.maximum(n_len - 1, 0), np.maximum(m_len - 1, 0)
    g = np.zeros(n_b, dtype=np.int64)
    live = np.nonzero((n_len > 0) & (m_len > 0))[0]
    cs, ct = np.full((n_b, t_s), -1, np.int64), np.full((n_b, t_t), -1, np.int64)  # compact ids
    while live.size:
        cs[live, j[live]], ct[live, i[live]] = g[live], g[live]
        live = live[(j[live] > 0) | (i[live] > 0)]
        if not live.size:
            break
        jl, il = j[live], i[live]
        jm, im = np.maximum(jl - 1, 0), np.maximum(il - 1, 0)
        diag = np.where((jl > 0) & (il > 0), acc[live, jm, im], np.inf)
        up = np.where(jl > 0, acc[live, jm, il], np.inf)
        left = np.where(il > 0, acc[live, jl, im], np.inf)
        best = np.minimum(np.minimum(diag, up), left)
        tol = best + _TIE * (1 + np.abs(best))
        take_diag = diag <= tol
        take_up = ~take_diag & (up <= tol)
        j[live] = np.where(take_diag | take_up, jm, jl)
        i[live] = np.where(take_up, il, im)
        g[live] += take_diag
    return cs, ct, g


def batch_dtw_groups(
    cost: np.ndarray, s_mask: np.ndarray, t_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DTW over the masked tokens of every sample, cut into merged steps, vectorised over B.

    Per sample this equals :func:`dtw_path` on ``cost[b][s_mask[b]][:, t_mask[b]]`` followed by
    :func:`path_groups` (same tie rule: diagonal, then up, then left), with the step ids written
    back at the padded positions. The DP runs row by row over (B, T_t) slabs and the back-trace
    moves all samples at once, so a batch costs about T_s + (T_s + T_t) array operations.

    Args:
        cost: (B, T_s, T_t) non-negative costs (e.g. CDM's ``ned · w_s · w_t``).
        s_mask: (B, T_s) bool, student tokens that take part.
        t_mask: (B, T_t) bool, teacher tokens that take part.

    Returns:
        ``(s_gid, t_gid)``: (B, T_s) and (B, T_t) int64 step ids 0..G_b−1 in path order; −1 for
        masked tokens and for samples with no token on one side.
    """
    cost = np.asarray(cost, dtype=np.float64)
    s_mask, t_mask = np.asarray(s_mask, dtype=bool), np.asarray(t_mask, dtype=bool)
    n_b, t_s, t_t = cost.shape
    if s_mask.shape != (n_b, t_s) or t_mask.shape != (n_b, t_t):
        raise ValueError(
            f"masks {s_mask.shape}, {t_mask.shape} do not match cost (B, T_s, T_t) = {cost.shape}"
        )
    s_gid, t_gid = np.full((n_b, t_s), -1, np.int64), np.full((n_b, t_t), -1, np.int64)
    if n_b == 0 or t_s == 0 or t_t == 0:
        return s_gid, t_gid
    # 1) compact each sample's taking-part tokens to the front (stable: order is kept)
    s_ord = np.argsort(~s_mask, axis=1, kind="stable")  # (B, T_s) positions, taking part first
    t_ord = np.argsort(~t_mask, axis=1, kind="stable")  # (B, T_t)
    n_len, m_len = s_mask.sum(1), t_mask.sum(1)  # (B,)
    rows = np.arange(n_b)
    c = cost[rows[:, None, None], s_ord[:, :, None], t_ord[:, None, :]]  # (B, T_s, T_t) compact
    # 2) accumulated cost; 3) back-trace, step ids counted from the end first
    cs, ct, g = _backtrace(_accumulate(c), n_len, m_len)
    # 4) ids in path order, written back at the padded positions
    total = g + 1  # (B,) steps per sample (for samples with a path)
    cs = np.where(cs >= 0, total[:, None] - 1 - cs, -1)
    ct = np.where(ct >= 0, total[:, None] - 1 - ct, -1)
    np.put_along_axis(s_gid, s_ord, cs, axis=1)
    np.put_along_axis(t_gid, t_ord, ct, axis=1)
    s_gid[~s_mask], t_gid[~t_mask] = -1, -1
    return s_gid, t_gid
