"""One configuration for every consumer of GoodPoint features.

The CLI, the ROS node, the evaluator and training's validation all build
their post-processing and matching from :class:`GoodPointConfig`, so a
threshold means the same thing everywhere.  Defaults are the paper's values
(Belikov & Potapov 2020); where the paper is silent the authors' code is
followed and the docstring says so.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

#: With no dustbin (paper §3) a cell with a flat softmax scores exactly 1/64,
#: so any useful keypoint threshold must be above it.
FLAT_CELL_SCORE = 1.0 / 64.0

#: Files larger than this are not decoded at all (a decompression bomb); the real
#: limit for the network is the memory budget (``memory_budget_mb``).
MAX_SIDE = 65500


@dataclass(frozen=True)
class Verification:
    """Defaults of geometric verification (USAC/MAGSAC) for one kind of view pair.

    ``verify="auto"`` has one meaning (:func:`goodpoint_ros.core.matching.resolve_verification`):
    the essential matrix when usable intrinsics are known, else ``uncalibrated``.

    Attributes:
        ransac_threshold: inlier threshold in pixels.
        uncalibrated: the model ``auto`` fits without intrinsics, ``homography``
            or ``fundamental``.
    """
    ransac_threshold: float
    uncalibrated: str


#: Two still images, independently detected (``match_features``, ``goodpoint match``,
#: ``goodpoint eval homography``): 3 px (the evaluation's headline ε; views up to a large
#: viewpoint or scale change) and, without intrinsics, a homography (a plane or a
#: rotating camera, as HPatches; README: ``.model (H)``).
STILL_PAIR = Verification(ransac_threshold=3.0, uncalibrated="homography")

#: Consecutive frames of one video (the node's frontend and stereo matcher, the bag
#: evaluator's relative pose): 1 px (small motion, the same keypoint detected again a
#: frame later) and, without intrinsics, the fundamental matrix (a 3-D scene).
VIDEO = Verification(ransac_threshold=1.0, uncalibrated="fundamental")


@dataclass(frozen=True)
class BagTopics:
    """Topic names of a recording: image, planar depth, camera_info and body pose."""
    image: str
    depth: str
    camera_info: str
    pose: str


#: The AirSim ROS 2 wrapper's topics (drone_1, front_center camera): what
#: ``goodpoint make-sample-bag`` writes and ``goodpoint eval bag`` reads by default.
AIRSIM_TOPICS = BagTopics(image="/airsim_node/drone_1/front_center/Scene",
                          depth="/airsim_node/drone_1/front_center/DepthPlanar",
                          camera_info="/airsim_node/drone_1/front_center/Scene/camera_info",
                          pose="/airsim_node/drone_1/odom_local_ned")


def _opt(help_: str, range_=None, flag: str = "", **kw):
    """Field metadata: the one help text / range the CLI options and the node's
    parameter table are generated from (``cli/common.py``, ``ros/params.py``)."""
    return {"help": help_, "range": range_, "flag": flag, **kw}


def field_info(name: str) -> Dict[str, Any]:
    """{help, range, flag, default} of a :class:`GoodPointConfig` field."""
    f = {f.name: f for f in dataclasses.fields(GoodPointConfig)}[name]
    return {**f.metadata, "default": f.default}


@dataclass
class GoodPointConfig:
    """Post-processing and matching settings.

    Attributes:
        keypoint_threshold: θ_keypoint on the confidence map.  Paper Table 2
            uses 0.021 on HPatches (0.028 on AirSim, §6.1).  Must exceed 1/64.
            ``None`` means "use the value recorded in the weights' metadata".
        nms_radius: non-maximum suppression radius in pixels; the authors
            evaluate with 8 px.  Survivors are > ``nms_radius`` apart.
            ``None``: the value recorded in the weights' metadata, else 8.
        border: keypoints closer than this to the image edge are removed (4 px,
            as SuperPoint / the authors' code).
        max_keypoints: keep the strongest k (``0`` or ``None``: all).
        bucket_cells: grid bucketing for an even spread, as ``(cols, rows)``;
            ``None`` disables it.
        max_per_bucket: cap per grid cell when bucketing is on.
        descriptor_threshold: θ_desc, max L2 distance between unit
            descriptors for a match (0.8, paper §6.1; ≡ cosine ≥ 0.68).
        ratio_test: Lowe ratio on L2 distances (``None``: off).
        mutual: mutual nearest neighbours only.
        subpixel: refine each NMS peak on the full-resolution confidence map:
            ``softargmax`` (probability-weighted centroid of the window),
            ``quadratic`` (per-axis parabola, 3×3) or ``none`` (whole pixels, as
            the paper).  Validation split, ε = 1 px: HM 0.385 → 0.496
            (training/README.md).
        subpixel_radius: softargmax window radius (2 → 5×5).
        memory_budget_mb: the most memory (MB) one frame may take, network
            included; a larger frame is refused (CLI) or downscaled (node)
            before anything is allocated.  The default keeps the process under
            ~4 GB; peak bytes per pixel are measured per backend
            (:data:`goodpoint_ros.core.pipeline.PEAK_BYTES_PER_PIXEL`).
        input_max: the pixel value that means white; ``0``: the type's full
            range (uint8 255, uint16 65535, float 1.0).  Set 4095 for a 12-bit
            camera publishing mono16, 1023 for 10-bit, 255 for floats in 0..255.
        pyramid_levels: run the network on an image pyramid of this many levels,
            each ``pyramid_factor`` the size of the previous, and pool the keypoints of all
            levels (mapped to the original pixels; ``max_keypoints`` applies to
            the pool).  The network has one receptive field, so beyond ~1.5×
            zoom its keypoints stop repeating; ORB, SIFT and AKAZE all detect on
            pyramids.  3 levels at 1/√2 cost 1.75× the network time, 5 at 2^-¼
            2.9×, 8 at 2^-¼ (the bundled weights' default, down to 0.3×) 3.3×.
            ``None``: the value recorded in the weights' metadata, else 1 (the paper).
        pyramid_factor: size ratio between pyramid levels (1/√2 by default; 2^-1/4
            with 5 levels spans the same 2× zoom at finer steps, as SIFT's several
            scales per octave, for 2.8× the network time).  ``None``: the weights'
            metadata, else 1/√2.
        upsample_below: frames whose longer side is under this many pixels are
            doubled before the network (bilinear; keypoints mapped back), as SIFT
            doubles every image for its first octave (Lowe 2004 §3.3): on a small
            frame the 8×8 cells are coarse.  4× the network time of that frame.
            Validation split at 320×240, 5 levels: HM 0.647 → 0.733 (8 levels:
            0.749; SIFT 0.672).
            ``0``: never; ``None``: the weights' metadata, else 0.  An explicit
            ``resize`` or ``scale`` of the extractor replaces it.
    """

    keypoint_threshold: Optional[float] = field(default=None, metadata=_opt(
        "θ_keypoint on the confidence map, in (1/64, 1); unset: the value in the weights' "
        "metadata (paper: 0.021)", (0.0, 1.0), "--threshold"))
    nms_radius: Optional[int] = field(default=None, metadata=_opt(
        "non-maximum suppression radius in pixels; unset: the value in the weights' metadata, "
        "else 8", (0, 64), "--nms"))
    border: int = field(default=4, metadata=_opt(
        "drop keypoints closer than this to the image edge (pixels)", (0, 256), "--border"))
    max_keypoints: Optional[int] = field(default=1000, metadata=_opt(
        "keep the strongest N keypoints; 0: all", (0, 100000), "--max-keypoints"))
    bucket_cells: Optional[tuple] = None
    max_per_bucket: int = 0
    descriptor_threshold: float = field(default=0.8, metadata=_opt(
        "θ_desc: max L2 distance between unit descriptors (paper: 0.8)", (0.0, 2.0),
        "--desc-threshold"))
    ratio_test: Optional[float] = field(default=None, metadata=_opt(
        "Lowe ratio test on distances, e.g. 0.9; unset: off (as the paper)", (0.0, 1.0), "--ratio"))
    mutual: bool = field(default=True, metadata=_opt("mutual nearest neighbours only"))
    subpixel: str = "softargmax"
    subpixel_radius: int = 2
    memory_budget_mb: float = field(default=4000.0, metadata={
        "help": "most memory (MB) one frame may take; larger frames are refused (CLI) or "
                "downscaled (node) before allocating", "range": (100.0, 1.0e6)})
    input_max: float = field(default=0.0, metadata={
        "help": "pixel value meaning white; 0: the type's full range (4095 for a 12-bit "
                "mono16 camera, 255 for floats in 0..255)", "range": (0.0, 1.0e9)})

    pyramid_levels: Optional[int] = field(default=None, metadata=_opt(
        "image pyramid levels, each pyramid_factor of the previous, keypoints pooled (3 levels: "
        "1.75x the network time); unset: the value in the weights' metadata, else 1",
        (1, 8), "--pyramid-levels"))
    pyramid_factor: Optional[float] = field(default=None, metadata=_opt(
        "size ratio between pyramid levels (0.707: 1/sqrt(2); 0.841: 2^-1/4, finer scale steps); "
        "unset: the value in the weights' metadata, else 0.707", (0.5, 0.9), "--pyramid-factor"))
    upsample_below: Optional[int] = field(default=None, metadata=_opt(
        "double frames whose longer side is under this many pixels before the network (as "
        "SIFT's first octave; 4x the network time); 0: never; unset: the value in the weights' "
        "metadata, else 0", (0, 8192), "--upsample-below"))

    #: Used when neither the user nor the weights' metadata gives θ_keypoint / the radius.
    DEFAULT_KEYPOINT_THRESHOLD = 0.021
    DEFAULT_NMS_RADIUS = 8
    DEFAULT_PYRAMID_LEVELS = 1
    #: Size ratio between pyramid levels when neither the user nor the weights give one.
    DEFAULT_PYRAMID_FACTOR = 2 ** -0.5
    #: Longer side under which frames are doubled when neither the user nor the weights say.
    DEFAULT_UPSAMPLE_BELOW = 0

    @property
    def scales(self) -> tuple:
        """Pyramid scales, largest first: (1.0,) or e.g. (1.0, 0.707, 0.5)."""
        n = self.pyramid_levels or self.DEFAULT_PYRAMID_LEVELS
        f = self.pyramid_factor or self.DEFAULT_PYRAMID_FACTOR
        return tuple(f ** i for i in range(n))

    def frame_scale(self, size: Tuple[int, int]) -> float:
        """How much a (W, H) frame is enlarged for the network: 2 under ``upsample_below``."""
        limit = self.DEFAULT_UPSAMPLE_BELOW if self.upsample_below is None else self.upsample_below
        return 2.0 if limit and max(size) < limit else 1.0

    def validate(self) -> "GoodPointConfig":
        """Raise ``ValueError`` with a readable message on a bad setting."""
        t = self.keypoint_threshold
        if t is not None and not (FLAT_CELL_SCORE < t < 1.0):
            raise ValueError(
                f"keypoint_threshold must be in (1/64={FLAT_CELL_SCORE:.4f}, 1): got {t} "
                "(with no dustbin a featureless 8x8 cell scores exactly 1/64)")
        if self.nms_radius is not None and self.nms_radius < 0:
            raise ValueError(f"nms_radius must be >= 0, got {self.nms_radius}")
        if self.border < 0:
            raise ValueError(f"border must be >= 0, got {self.border}")
        if self.max_keypoints is not None and self.max_keypoints < 0:
            raise ValueError(f"max_keypoints must be >= 0, got {self.max_keypoints}")
        if not (0.0 < self.descriptor_threshold <= 2.0):
            raise ValueError(
                f"descriptor_threshold is an L2 distance between unit vectors, in (0, 2]: "
                f"got {self.descriptor_threshold}")
        if self.ratio_test is not None and not (0.0 < self.ratio_test <= 1.0):
            raise ValueError(f"ratio_test must be in (0, 1], got {self.ratio_test}")
        if self.subpixel not in ("quadratic", "softargmax", "none"):
            raise ValueError(f"subpixel must be softargmax, quadratic or none, got {self.subpixel!r}")
        if not (0 <= self.subpixel_radius <= 4):
            raise ValueError(f"subpixel_radius must be in 0..4, got {self.subpixel_radius}")
        if not (self.memory_budget_mb > 0):
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        for name in ("pyramid_levels", "pyramid_factor", "upsample_below"):   # as the CLI / node show
            value, (lo, hi) = getattr(self, name), field_info(name)["range"]
            if value is not None and not (lo <= value <= hi):
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        if not (self.input_max >= 0) or self.input_max == float("inf"):
            raise ValueError(f"input_max must be 0 (full range) or positive, got {self.input_max}")
        if self.bucket_cells is not None:
            cols, rows = self.bucket_cells
            if cols < 1 or rows < 1 or self.max_per_bucket < 1:
                raise ValueError("bucketing needs bucket_cells >= (1, 1) and max_per_bucket >= 1")
        return self

    def resolved(self, metadata: Optional[Dict[str, Any]] = None) -> "GoodPointConfig":
        """A copy with every field the weights record (``metadata["detection"]``:
        θ_keypoint, the NMS radius, pyramid levels and factor, upsampling) filled in where unset;
        then validated.
        The CLI, the node and the evaluator all resolve through here."""
        out = dataclasses.replace(self)
        det = (metadata or {}).get("detection", {})
        if out.keypoint_threshold is None:
            out.keypoint_threshold = float(det.get("keypoint_threshold",
                                                   self.DEFAULT_KEYPOINT_THRESHOLD))
        if out.nms_radius is None:
            out.nms_radius = int(det.get("nms_radius", self.DEFAULT_NMS_RADIUS))
        if out.pyramid_levels is None:
            out.pyramid_levels = int(det.get("pyramid_levels", self.DEFAULT_PYRAMID_LEVELS))
        if out.pyramid_factor is None:
            out.pyramid_factor = float(det.get("pyramid_factor", self.DEFAULT_PYRAMID_FACTOR))
        if out.upsample_below is None:
            out.upsample_below = int(det.get("upsample_below", self.DEFAULT_UPSAMPLE_BELOW))
        return out.validate()

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
