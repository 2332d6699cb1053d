"""VO settings: one typed dataclass, the one source for the node, the CLI and tests.

The back end follows the usual keyframe VO design (ORB-SLAM2's tracking of a
local map, Mur-Artal & Tardós 2017, and the sliding-window BA of
Strasdat et al. 2010); GoodPoint's own settings (θ_keypoint, NMS, θ_desc —
Belikov & Potapov 2020 §6.1) stay in
:class:`goodpoint_ros.core.config.GoodPointConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

MODES = ("stereo", "rgbd", "mono")
SOLVERS = ("gtsam", "scipy")
STEREO_MATCHING = ("patch", "descriptor")
#: GoodPoint pyramid levels for the VO, whatever the weights recommend for still pairs:
#: frame-to-frame scale change is small and the coarse levels' keypoints are worse
#: localised (KITTI 06 slice, half resolution: ATE 0.044 m with 1 level, 0.088 m with 3).
VO_PYRAMID_LEVELS = 1
#: USAC / reprojection threshold per mode when ``pnp_threshold`` is unset (pixels), chosen
#: on the generated tuning bags (docs/odometry.md, "Reprojection threshold per mode"): RGB-D
#: 1 px is better for every method there, mono 1 px for GoodPoint and SIFT. Stereo keeps
#: 2 px: 1 px was better on the rendered stereo sequences too, but they have no blur or
#: calibration error, and the threshold is the setting such noise decides ("Stereo tuning
#: sequences"); KITTI is evaluation only.
PNP_THRESHOLD_BY_MODE = {"stereo": 2.0, "rgbd": 1.0, "mono": 1.0}
#: Keyframe at the latest every this many frames, per mode, when ``keyframe_max_gap`` is
#: unset, chosen on the same tuning data (docs/odometry.md, "Keyframe gap per mode"): every
#: third frame lowered every method's error in mono (mean % of path, GoodPoint 0.685 →
#: 0.647, SIFT 0.39 → 0.37, ORB 2.09 → 1.38, AKAZE 1.34 → 1.17) and in stereo on the
#: rendered stereo sequences (GoodPoint 0.204 → 0.168, SIFT 0.048 → 0.049, ORB 0.102 →
#: 0.068, AKAZE 0.128 → 0.110);
#: in RGB-D it cost every classical method (SIFT 0.13 → 0.15, ORB 0.48 → 0.82).
KEYFRAME_MAX_GAP_BY_MODE = {"stereo": 3, "rgbd": 5, "mono": 3}
#: Keyframes kept in the BA as fixed anchors after they leave the window, per mode, when
#: ``anchor_keyframes`` is unset (docs/odometry.md, "Anchor keyframes"): 4 lowered every
#: method's error on the RGB-D and mono tuning bags (mean % of path, mono GoodPoint 0.226 →
#: 0.180, ORB 1.14 → 0.75; RGB-D GoodPoint 0.185 → 0.121) and on the rendered stereo
#: sequences; stereo keeps none: on real KITTI frames, whose calibration and poses carry
#: the errors renders have not, fixed anchors cost GoodPoint, SIFT and AKAZE 24–67 % of their
#: ATE.
ANCHOR_KEYFRAMES_BY_MODE = {"stereo": 0, "rgbd": 4, "mono": 4}


def per_mode(table: dict) -> str:
    """``{"stereo": 2.0, "rgbd": 1.0, "mono": 1.0}`` → ``"stereo 2, rgbd 1, mono 1"``: the
    figures a help text gives, from the table itself."""
    return ", ".join(f"{mode} {value:g}" for mode, value in table.items())


@dataclass
class VOConfig:
    """Visual-odometry settings (pixels refer to the images the VO is given).

    Matching and degenerate-match rejection (before PnP):
        ratio: Lowe ratio for every association (stereo, map → frame, two-view);
            near-identical descriptors (flat sky) fail it.
        min_score: drop keypoints scoring below this (None: keep all the
            detector returned).  For GoodPoint a floor above θ_keypoint.
        distinct_fraction: drop a keypoint whose nearest other descriptor in
            the same image is closer than this fraction of the image's median
            nearest-other distance (copies of one flat cell); 0 disables.
        ratio_exclusion: candidates within this many pixels of the best one are
            not its rivals (one descriptor cell: neighbours share an interpolated
            descriptor), for the ratio test and the distinctiveness filter.
        spread_grid / min_spread_cells: PnP inliers must occupy at least this
            many cells of a (cols, rows) grid, else the frame is LOST.
    Tracking:
        search_radius: guided-matching window around the predicted
            projection (pixels); matching falls back to an unguided search
            when too few are found.
        pnp_threshold: USAC reprojection threshold (pixels); None: the mode's
            (:data:`PNP_THRESHOLD_BY_MODE`), read through :attr:`reprojection_threshold`.
        ransac_seed: USAC's random generator state (a benchmark varies it to
            report the spread of a short sequence's ATE, not one draw).
        min_inliers: fewer PnP inliers → LOST.
        max_translation / max_rotation_deg: a larger jump in one frame is
            rejected as a failure (LOST) rather than believed.
    Keyframes and map:
        keyframe_ratio: a new keyframe when the tracked landmarks fall below
            this fraction of those tracked at the last keyframe.
        keyframe_min_inliers / keyframe_max_gap: or when inliers drop below
            this count, or this many frames have passed (None: the mode's,
            :data:`KEYFRAME_MAX_GAP_BY_MODE`, read through :attr:`keyframe_gap`).
        keyframe_min_parallax_deg: the gap rule waits until the tracked landmarks'
            median parallax since the last keyframe reaches this (degrees), so a
            camera at rest piles up no keyframes (their drift); a moving camera
            passes it within a frame or two (generated bags: 1.5–4° over three
            frames).
        min_disparity / max_depth_baselines: stereo points kept for
            triangulation (disparity px; depth ≤ this many baselines).
        stereo_matching: ``descriptor`` (default) — detect in both images and match
            descriptors in the row band (then ``subpixel_stereo`` refines);
            ``patch`` — the detector runs on the left image only and each
            keypoint's right-image position is found by an NCC search along its
            row: half the network time, at some accuracy on KITTI
            (docs/odometry.md).
        stereo_window: NCC patch side for ``patch`` (pixels, odd).
        subpixel_stereo: refine disparities by patch matching along the row
            (GoodPoint keypoints sit on whole pixels).
        min_parallax_deg: mono triangulation needs this ray angle.
        mono_triangulation_keyframes: mono triangulates a new keyframe against this
            many previous keyframes (newest first; wider baselines for what is left).
            3 (was 2) on the tuning bags, mean ATE % of path: GoodPoint 2.87 → 2.41,
            SIFT 0.53 → 0.53, ORB 1.66 → 1.65, AKAZE 1.19 → 1.22 (docs/odometry.md).
        epipolar_threshold: mono triangulation candidates lie within this many
            pixels of the epipolar line given by the two keyframes' poses.
        klt_refine: align each tracked keypoint with its landmark's newest keyframe
            observation by pyramidal Lucas–Kanade (sub-pixel, consistent across
            frames; detections alone are good to ~0.6 px for GoodPoint).
        klt_window / klt_check / klt_max_shift: LK window (px); forward-backward
            disagreement allowed (px); largest move away from the detection (px).
        klt_max_scale_change: refine only landmarks whose depth changed by at most
            this fraction since that keyframe (translation-only LK is biased by
            about change × patch radius: 5 % × 5 px = 0.25 px, below the ~0.6 px
            detection noise it corrects).
    Bundle adjustment:
        window: keyframes in the sliding window (the oldest is held fixed;
            in mono the two oldest, which also fixes the scale).
        anchor_keyframes: keyframes that left the window stay in the bundle
            adjustment this long as fixed poses, so the landmarks they share
            with the window stay tied to poses that no longer move (0: none;
            None: the mode's, :data:`ANCHOR_KEYFRAMES_BY_MODE`, read through
            :attr:`anchor_count`).
        mono_init_ba: refine the mono two-view map by a BA with only the first
            keyframe fixed, then rescale the baseline to one unit (ORB-SLAM's initial
            BA); else its essential-matrix pose is never refined, being the window's
            scale gauge (mean % of path on the mono tuning bags: GoodPoint 0.180 →
            0.171, SIFT 0.167 → 0.147, ORB 0.754 → 0.562, AKAZE 0.262 → 0.236).
        solver: ``gtsam`` (Levenberg–Marquardt, Huber loss, marginal
            covariance) or ``scipy`` (least_squares TRF with a Huber loss).
        huber: Huber threshold in whitened units (σ = ``pixel_sigma``).
        ba_iterations: solver iteration cap.
    Depth (RGB-D):
        virtual_baseline: RGB-D points are handled as a stereo rig with this
            baseline (metres), as ORB-SLAM2 does, so one BA serves both.
        max_depth: RGB-D depth beyond this is ignored (metres).
    Lost track:
        lost_covariance: diagonal variance published while LOST (m², rad²).
    """

    # metadata: the VO node's parameter help / range / choices (ros/vo_params.py from_field)
    mode: str = field(default="stereo", metadata={
        "help": "stereo: rectified left/right pair + both camera_info (baseline from the right "
                "P); rgbd: image + registered depth (16UC1 mm / 32FC1 m); mono: up to scale",
        "choices": MODES})
    ratio: float = 0.9
    min_score: Optional[float] = None
    distinct_fraction: float = 0.25
    ratio_exclusion: float = 8.0
    spread_grid: tuple = (4, 3)
    min_spread_cells: int = 3
    search_radius: float = 24.0
    pnp_threshold: Optional[float] = field(default=None, metadata={
        "help": "PnP / bundle-adjustment outlier threshold in pixels (unset: the mode's, "
                f"{per_mode(PNP_THRESHOLD_BY_MODE)})", "range": (0.1, 20.0)})
    ransac_seed: int = 0
    min_inliers: int = field(default=12, metadata={
        "help": "fewer PnP inliers: LOST (covariance inflated, map restarted)",
        "range": (4, 10000)})
    max_translation: float = 5.0
    max_rotation_deg: float = 30.0
    keyframe_ratio: float = 0.8
    keyframe_min_inliers: int = 80
    keyframe_max_gap: Optional[int] = field(default=None, metadata={
        "help": "a keyframe at the latest every this many frames (unset: the mode's, "
                f"{per_mode(KEYFRAME_MAX_GAP_BY_MODE)}), once the parallax below is reached",
        "range": (1, 1000)})
    keyframe_min_parallax_deg: float = field(default=0.5, metadata={
        "help": "the gap keyframe waits until the tracked landmarks' median parallax since "
                "the last keyframe reaches this (degrees): a camera at rest adds none",
        "range": (0.0, 90.0)})
    min_disparity: float = 0.5
    max_depth_baselines: float = 80.0
    stereo_matching: str = field(default="descriptor", metadata={
        "help": "stereo right-image correspondences: descriptor (the network on both "
                "images) or patch (the network on the left image only, a row search on the "
                "right: ~2x faster)", "choices": STEREO_MATCHING})
    stereo_window: int = 11
    subpixel_stereo: bool = True
    min_parallax_deg: float = 1.0
    epipolar_threshold: float = 2.0
    mono_triangulation_keyframes: int = 3
    klt_refine: bool = True
    klt_window: int = 11
    klt_check: float = 0.25
    klt_max_shift: float = 2.0
    klt_max_scale_change: float = 0.05
    window: int = field(default=6, metadata={
        "help": "keyframes in the sliding-window bundle adjustment", "range": (2, 100)})
    anchor_keyframes: Optional[int] = field(default=None, metadata={
        "help": "keyframes kept fixed in the bundle adjustment after leaving the window "
                f"(unset: the mode's, {per_mode(ANCHOR_KEYFRAMES_BY_MODE)}); 0: none",
        "range": (0, 100)})
    mono_init_ba: bool = field(default=True, metadata={
        "help": "mono: bundle-adjust the two-view map with only its first keyframe fixed, "
                "then rescale its baseline to 1 unit (docs/odometry.md, 'Mono initial BA')"})
    solver: str = field(default="gtsam", metadata={
        "help": "sliding-window bundle adjustment: gtsam (Levenberg-Marquardt, marginal "
                "covariance) or scipy (least_squares; the fallback when gtsam is missing)",
        "choices": SOLVERS})
    pixel_sigma: float = 1.0
    huber: float = 1.345
    ba_iterations: int = 10
    virtual_baseline: float = 0.08
    max_depth: float = 20.0
    lost_covariance: float = 1e4
    max_landmarks: int = 8000

    def validate(self) -> "VOConfig":
        """Raise ``ValueError`` with a readable line on a bad setting."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.stereo_matching not in STEREO_MATCHING:
            raise ValueError(f"stereo_matching must be one of {', '.join(STEREO_MATCHING)}, "
                             f"got {self.stereo_matching!r}")
        if self.stereo_window < 3 or self.stereo_window % 2 == 0:
            raise ValueError(f"stereo_window must be odd and >= 3, got {self.stereo_window}")
        if self.mono_triangulation_keyframes < 1:
            raise ValueError("mono_triangulation_keyframes must be >= 1, got "
                             f"{self.mono_triangulation_keyframes}")
        if self.klt_window < 3:
            raise ValueError(f"klt_window must be >= 3, got {self.klt_window}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 keyframes, got {self.window}")
        if self.min_inliers < 4:
            raise ValueError(f"min_inliers must be >= 4 (PnP), got {self.min_inliers}")
        if self.keyframe_max_gap is not None and self.keyframe_max_gap < 1:
            raise ValueError(f"keyframe_max_gap must be >= 1 frame, got {self.keyframe_max_gap}")
        if self.anchor_keyframes is not None and self.anchor_keyframes < 0:
            raise ValueError(f"anchor_keyframes must be >= 0, got {self.anchor_keyframes}")
        if not self.keyframe_min_parallax_deg >= 0:
            raise ValueError("keyframe_min_parallax_deg must be >= 0, got "
                             f"{self.keyframe_min_parallax_deg}")
        if self.pnp_threshold is not None and not self.pnp_threshold > 0:
            raise ValueError(f"pnp_threshold must be positive, got {self.pnp_threshold}")
        for name in ("search_radius", "pixel_sigma", "huber", "virtual_baseline",
                     "max_depth", "max_translation", "max_rotation_deg", "lost_covariance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.distinct_fraction < 1:
            raise ValueError(f"distinct_fraction must be in [0, 1), got {self.distinct_fraction}")
        return self

    def _set_or_mode(self, value, table: Dict[str, Any]):
        """A setting left unset (None) takes its mode's value from ``table``."""
        return table[self.mode] if value is None else value

    @property
    def reprojection_threshold(self) -> float:
        """The USAC / outlier threshold in pixels: ``pnp_threshold`` or the mode's."""
        return float(self._set_or_mode(self.pnp_threshold, PNP_THRESHOLD_BY_MODE))

    @property
    def keyframe_gap(self) -> int:
        """Frames after which a keyframe is due whatever the inliers: ``keyframe_max_gap``
        or the mode's."""
        return int(self._set_or_mode(self.keyframe_max_gap, KEYFRAME_MAX_GAP_BY_MODE))

    @property
    def anchor_count(self) -> int:
        """Keyframes held fixed in the BA after leaving the window: ``anchor_keyframes`` or
        the mode's."""
        return int(self._set_or_mode(self.anchor_keyframes, ANCHOR_KEYFRAMES_BY_MODE))

    def replace(self, **kw) -> "VOConfig":
        return dataclasses.replace(self, **kw).validate()

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
