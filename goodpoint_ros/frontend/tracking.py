"""Persistent keypoint identities across frames (``Keypoints.track_ids``).

A keypoint matched to the previous frame keeps that keypoint's id; every other
keypoint gets a fresh one.  "Matched" means a verified inlier when geometric
verification produced a model, else any accepted descriptor match (mutual NN
under θ_desc), so that tracks survive when verification is switched off.
Ids are unique for the lifetime of a tracker and never reused, which is what a
SLAM back end needs to associate landmarks.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np


class TrackIdAssigner:
    """Carries track ids from frame to frame.

    ``assign(num_current, matches, inliers)`` with matches [M,2] (index in the
    previous frame, index in the current frame) → ids [num_current] uint64.
    The first frame (or after :meth:`reset`) gets fresh ids only.
    """

    def __init__(self, first_id: int = 1):
        # 0 is left free so a consumer can use it as "no track".
        self._next = int(first_id)
        self._prev_ids: Optional[np.ndarray] = None

    @property
    def previous_ids(self) -> Optional[np.ndarray]:
        return None if self._prev_ids is None else self._prev_ids.copy()

    def reset(self) -> None:
        """Forget the previous frame (e.g. after a camera reset or a time jump)."""
        self._prev_ids = None

    def fresh(self, n: int) -> np.ndarray:
        ids = np.arange(self._next, self._next + n, dtype=np.uint64)
        self._next += n
        return ids

    def assign(self, num_current: int, matches: Optional[np.ndarray] = None,
               inliers: Optional[np.ndarray] = None) -> np.ndarray:
        """Ids for the current frame's ``num_current`` keypoints (then remembered)."""
        ids = np.zeros(num_current, np.uint64)
        inherited = np.zeros(num_current, bool)
        if self._prev_ids is not None and matches is not None and len(matches):
            m = np.asarray(matches, np.int64).reshape(-1, 2)
            keep = np.ones(len(m), bool) if inliers is None else np.asarray(inliers, bool)
            m = m[keep]
            ok = (m[:, 0] >= 0) & (m[:, 0] < len(self._prev_ids)) & (m[:, 1] >= 0) & (m[:, 1] < num_current)
            m = m[ok]
            # One-to-one by construction of mutual NN; guard anyway so an id is
            # never given to two keypoints (first match, i.e. best distance, wins).
            _, first = np.unique(m[:, 1], return_index=True)
            m = m[np.sort(first)]
            _, first = np.unique(m[:, 0], return_index=True)
            m = m[np.sort(first)]
            ids[m[:, 1]] = self._prev_ids[m[:, 0]]
            inherited[m[:, 1]] = True
        ids[~inherited] = self.fresh(int((~inherited).sum()))
        self._prev_ids = ids.copy()
        return ids


class TrackLengths:
    """How long tracks live, on top of :class:`TrackIdAssigner` (the node's own ids).

    ``update(n_prev, n_cur, links)`` per consecutive frame pair, links [K,2]
    (index in the previous frame, index in the current one), e.g. the
    essential-matrix inliers.  A track is one id; its length is the number of
    frames the id is seen in.  :meth:`summary` counts tracks seen in ≥ 2 frames.
    """

    def __init__(self):
        self.ids = TrackIdAssigner()
        self.frames_per_id = np.zeros(0, np.int64)

    def _count(self, ids: np.ndarray) -> None:
        top = int(ids.max()) + 1 if len(ids) else 0
        if top > len(self.frames_per_id):
            self.frames_per_id = np.concatenate(
                [self.frames_per_id, np.zeros(top - len(self.frames_per_id), np.int64)])
        np.add.at(self.frames_per_id, ids.astype(np.int64), 1)

    def update(self, n_prev: int, n_cur: int, links: np.ndarray) -> None:
        prev = self.ids.previous_ids
        if prev is None or len(prev) != n_prev:        # first pair, or a gap: start afresh
            self.ids.reset()
            self._count(self.ids.assign(n_prev))
        self._count(self.ids.assign(n_cur, links))

    def summary(self) -> Dict[str, float]:
        """Mean and median length (frames) of tracks seen in ≥ 2 frames."""
        arr = self.frames_per_id[self.frames_per_id > 1].astype(np.float64)
        if not len(arr):
            return {"mean": float("nan"), "median": float("nan"), "tracks": 0}
        return {"mean": float(arr.mean()), "median": float(np.median(arr)), "tracks": int(len(arr))}
