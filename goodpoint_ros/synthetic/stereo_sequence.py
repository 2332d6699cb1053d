"""Write a rectified stereo sequence of the rendered village in the KITTI odometry layout.

Stereo VO needs tuning data as much as RGB-D and mono do, and the real stereo
sequences (``../shared/data/vo``) are evaluation only.  This renders the same
village and trajectories as :mod:`.sample_bag` through an ideal rectified rig
(the right camera ``baseline`` metres along the left camera's x axis, same K),
so ``goodpoint eval vo`` reads it with its KITTI loader:

* ``image_0/NNNNNN.png``, ``image_1/NNNNNN.png``: 8-bit grey, left and right;
* ``calib.txt``: ``P0`` = K [I | 0], ``P1`` = K [I | (−B, 0, 0)] (Tx = −fx·B);
* ``times.txt``: seconds from the first frame;
* ``poses.txt``: T_cam0(first)_cam0(i), 3×4 row-major (KITTI's convention).

Sensor noise is drawn independently for the two images.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from goodpoint_ros.core.geometry import inv_T
from goodpoint_ros.synthetic import scene as sc
from goodpoint_ros.synthetic.sample_bag import body_pose, camera_extrinsic

#: Right-image noise seeds are offset by this from the left's (independent draws).
RIGHT_SEED_OFFSET = 1_000_003


@dataclass
class StereoSequenceSpec:
    """What to render. ``baseline`` in metres (a drone-sized rig); ``size`` (W, H): 640×480
    with the 90° field of view gives 8 px of disparity at 10 m with 0.25 m."""
    frames: int = 60
    size: Tuple[int, int] = (640, 480)
    baseline: float = 0.25
    lighting: str = "day"
    fps: float = 10.0
    speed: float = 1.5
    seed: int = 0
    motion: str = "turns"

    def validate(self) -> "StereoSequenceSpec":
        if self.frames < 2:
            raise ValueError(f"--frames must be at least 2, got {self.frames}")
        if not self.baseline > 0:
            raise ValueError(f"--baseline must be positive (metres), got {self.baseline}")
        if not self.fps > 0 or self.speed < 0:
            raise ValueError("--fps must be positive and --speed non-negative")
        if self.motion not in sc.MOTIONS:
            raise ValueError(f"--motion must be one of {', '.join(sc.MOTIONS)}, got {self.motion!r}")
        if self.lighting not in ("day", "night"):
            raise ValueError(f"--lighting must be day or night, got {self.lighting!r}")
        return self


def projection_rows(K: np.ndarray, baseline: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rectified P0, P1 [3,4] of an ideal rig: the right camera at +baseline along x."""
    P0 = np.hstack([K, np.zeros((3, 1))])
    P1 = P0.copy()
    P1[0, 3] = -K[0, 0] * baseline
    return P0, P1


def camera_poses(spec: StereoSequenceSpec) -> np.ndarray:
    """[N,4,4] T_world_cam0 (NED world, optical camera) at the frame times."""
    T_bc = camera_extrinsic()
    return np.stack([body_pose(i / spec.fps, spec.speed, spec.motion) @ T_bc
                     for i in range(spec.frames)])


def write_stereo_sequence(out, spec: Optional[StereoSequenceSpec] = None,
                          progress: bool = False) -> Path:
    """Render and write the sequence to ``out`` (must not exist).

    Written into a temporary sibling directory and renamed when complete, so an
    interrupted run leaves nothing that looks like a finished sequence."""
    spec = (spec or StereoSequenceSpec()).validate()
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} exists already (remove it or pick another name)")
    out.parent.mkdir(parents=True, exist_ok=True)
    world = sc.village(seed=spec.seed)
    K = sc.intrinsics(spec.size)
    T_wc = camera_poses(spec)
    T_right = np.eye(4)
    T_right[0, 3] = spec.baseline
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for sub in ("image_0", "image_1"):
            (tmp / sub).mkdir()
        frames = range(spec.frames)
        if progress:
            frames = tqdm(frames, desc="rendering", unit="frame")
        for i in frames:
            noise = spec.seed * 7919 + i
            for sub, T, s in (("image_0", T_wc[i], noise),
                              ("image_1", T_wc[i] @ T_right, noise + RIGHT_SEED_OFFSET)):
                bgr, _ = sc.render(world, K, T, spec.size, spec.lighting, seed=s)
                if not cv2.imwrite(str(tmp / sub / f"{i:06d}.png"),
                                   cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)):
                    raise OSError(f"cannot write {tmp / sub / f'{i:06d}.png'}")
        P0, P1 = projection_rows(K, spec.baseline)
        (tmp / "calib.txt").write_text("".join(
            f"{name}: {' '.join(f'{v:.12e}' for v in P.ravel())}\n"
            for name, P in (("P0", P0), ("P1", P1))))
        np.savetxt(tmp / "times.txt", np.arange(spec.frames) / spec.fps, fmt="%.6e")
        rel = np.stack([inv_T(T_wc[0]) @ T for T in T_wc])
        np.savetxt(tmp / "poses.txt", rel[:, :3, :].reshape(len(rel), 12), fmt="%.12e")
        try:
            os.rename(tmp, out)
        except OSError as exc:      # another writer finished first: its sequence stays
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise FileExistsError(f"{out} was written by another run meanwhile (kept; "
                                  "this one's frames are discarded)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
