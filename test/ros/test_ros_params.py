"""Node parameters without ROS: the table, config/detector.yaml, validation, bucketing."""
from pathlib import Path

import numpy as np
import pytest

from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.ros.params import (
    PARAMETERS,
    SPECS,
    check_value,
    config_from_params,
    defaults,
    load_yaml,
    resize_from,
    stereo_params_from,
    validate_update,
    yaml_comment,
)

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_lists_every_parameter_with_its_default_and_they_validate():
    assert load_yaml(ROOT / "config" / "detector.yaml") == defaults()
    assert validate_update(defaults(), []) == defaults()
    for p in PARAMETERS:
        assert p.description and type(p.default) in (bool, int, float, str), p.name
        if p.range:
            assert p.range[0] <= p.default <= p.range[1], p.name
        if p.choices:
            assert p.default in p.choices, p.name


def test_yaml_comments_say_what_the_table_says():
    """Each parameter's comment in config/detector.yaml is the table's description,
    choices and range: a user reading the file sees what ``ros2 param describe`` says
    (five had gone stale: the backend list lacked openvino)."""
    lines = (ROOT / "config" / "detector.yaml").read_text(encoding="utf-8").splitlines()
    seen = {}
    for above, line in zip(lines, lines[1:]):
        name = line.strip().split(":", 1)[0]
        if name in SPECS and line.startswith("    ") and not line.strip().startswith("#"):
            seen[name] = above.strip().removeprefix("# ")
    assert set(seen) == set(SPECS)
    stale = {n: c for n, c in seen.items() if c != yaml_comment(SPECS[n])}
    assert not stale, stale


def test_yaml_matches_the_dataclass_defaults():
    """config/detector.yaml, read as the node reads it, gives GoodPointConfig() exactly:
    the dataclass is the one source of the detection and matching defaults."""
    from goodpoint_ros.core.config import GoodPointConfig, field_info
    from goodpoint_ros.frontend.frontend import FrontendConfig
    from goodpoint_ros.ros.params import SPECS, frontend_config_from_params
    yaml_values = load_yaml(ROOT / "config" / "detector.yaml")
    assert config_from_params(yaml_values) == GoodPointConfig()
    assert frontend_config_from_params(yaml_values) == FrontendConfig()
    for name in ("keypoint_threshold", "nms_radius", "border", "max_keypoints",
                 "descriptor_threshold", "ratio_test"):
        assert SPECS[name].description.startswith(field_info(name)["help"]), name


def test_the_node_honours_the_nms_radius_of_the_weights():
    meta = {"detection": {"keypoint_threshold": 0.1, "nms_radius": 5}}
    assert config_from_params(defaults()).resolved(meta).nms_radius == 5
    assert config_from_params(dict(defaults(), nms_radius=3)).resolved(meta).nms_radius == 3
    assert config_from_params(defaults()).resolved({}).nms_radius == 8


def test_off_values_map_to_the_config_nones():
    cfg = config_from_params(defaults())
    assert cfg.keypoint_threshold is None            # from the weights' metadata
    assert cfg.bucket_cells is None and cfg.ratio_test is None
    assert cfg.max_keypoints == 1000 and cfg.nms_radius is None and cfg.descriptor_threshold == 0.8
    p = dict(defaults(), max_keypoints=0, bucket_cols=4, bucket_rows=3, max_per_bucket=2,
             ratio_test=0.9, keypoint_threshold=0.03)
    cfg = config_from_params(p)
    assert cfg.max_keypoints is None and cfg.bucket_cells == (4, 3) and cfg.max_per_bucket == 2
    assert cfg.ratio_test == 0.9 and cfg.keypoint_threshold == 0.03
    assert stereo_params_from(dict(defaults(), max_disparity=0.0)).max_disparity is None
    assert resize_from(defaults()) is None
    assert resize_from(dict(defaults(), resize_width=640, resize_height=480)) == (640, 480)
    with pytest.raises(ValueError, match="both"):
        resize_from(dict(defaults(), resize_width=640))


@pytest.mark.parametrize("name,value,match", [
    ("keypoint_threshold", 0.01, "1/64"),
    ("keypoint_threshold", "0.1", "float"),
    ("nms_radius", 8.0, "int"),
    ("nms_radius", -2, "range|in \\["),
    ("verification", "magic", "one of"),
    ("backend", "onnxruntime", "fixed at start-up"),
    ("mode", "stereo", "fixed at start-up"),
    ("descriptor_threshold", 0.0, "descriptor_threshold"),
    ("min_disparity", 50.0, None),               # fine alone...
])
def test_bad_updates_are_refused_with_a_reason(name, value, match):
    if match is None:
        assert validate_update(defaults(), [(name, value)])[name] == value
        with pytest.raises(ValueError, match="max_disparity"):   # ...but not above max_disparity
            validate_update(defaults(), [(name, value), ("max_disparity", 10.0)])
        return
    with pytest.raises(ValueError, match=match):
        validate_update(defaults(), [(name, value)])


def test_ints_are_accepted_for_doubles_and_unknown_names_left_to_rclpy():
    assert check_value("sync_slop", 0) == 0.0 and type(check_value("sync_slop", 0)) is float
    assert validate_update(defaults(), [("use_sim_time", True)]) == defaults()
    with pytest.raises(ValueError):
        check_value("no_such_parameter", 1)
    assert set(SPECS) == {p.name for p in PARAMETERS}


class GridBackend:
    """Every 16 px a peak, stronger towards the top-left: without bucketing the
    strongest keypoints all come from one corner."""
    name, precision, metadata = "grid", "fp32", {}

    def infer(self, x):
        h, w = x.shape[2:]
        prob = np.full((1, h, w), 1 / 64, np.float32)
        ys, xs = np.mgrid[8:h - 4:16, 8:w - 4:16]
        prob[0, ys, xs] = 0.9 - 0.8 * (ys + xs) / (h + w)
        return prob, np.ones((1, 256, h // 8, w // 8), np.float32) / 16


def test_bucketing_parameters_spread_keypoints_over_the_grid():
    ex = FeatureExtractor(GridBackend(), config=config_from_params(
        dict(defaults(), keypoint_threshold=0.05, max_keypoints=16)))
    img = np.zeros((128, 128), np.uint8)
    plain = ex(img).keypoints
    ex.set_config(config_from_params(dict(defaults(), keypoint_threshold=0.05, max_keypoints=16,
                                          bucket_cols=4, bucket_rows=4, max_per_bucket=1)))
    spread = ex(img).keypoints
    cells = lambda k: set(map(tuple, (k // 32).astype(int)))   # noqa: E731
    assert len(plain) == len(spread) == 16
    assert len(cells(spread)) == 16                    # one per 32 px cell
    assert len(cells(plain)) < 10                      # crowded in the strong corner


def test_vo_yaml_lists_every_vo_parameter_with_the_dataclass_defaults():
    """config/vo.yaml is the VO node's table; the VO fields' defaults are VOConfig's and
    GoodPointConfig's (the one source), and the shipped values build VOConfig() exactly."""
    import dataclasses

    from goodpoint_ros.core.config import GoodPointConfig
    from goodpoint_ros.odometry.config import VOConfig
    from goodpoint_ros.ros.vo_params import VO_PARAMETERS, check_vo_values, vo_config, vo_defaults
    yaml_values = load_yaml(ROOT / "config" / "vo.yaml")
    assert yaml_values == vo_defaults()
    assert check_vo_values(yaml_values) == vo_defaults()
    assert vo_config(yaml_values) == VOConfig()
    vo_fields = {f.name: f.default for f in dataclasses.fields(VOConfig)}
    for name in ("mode", "solver", "window", "min_inliers", "stereo_matching"):
        assert vo_defaults()[name] == vo_fields[name], name
    # the left-image-only speed path is reachable from the node
    assert vo_config(dict(yaml_values, stereo_matching="patch")).stereo_matching == "patch"
    assert vo_defaults()["max_keypoints"] == GoodPointConfig().max_keypoints
    for p in VO_PARAMETERS:
        assert p.description and p.read_only, p.name
        if p.range:
            assert p.range[0] <= p.default <= p.range[1], p.name
        if p.choices:
            assert p.default in p.choices, p.name


def test_vo_camera_pose_default_is_rep103_and_bad_values_are_refused():
    from goodpoint_ros.core.geometry import R_BASE_OPTICAL
    from goodpoint_ros.ros.vo_params import T_base_camera, check_vo_values, vo_defaults
    T = T_base_camera(vo_defaults())
    np.testing.assert_allclose(T[:3, :3], R_BASE_OPTICAL, atol=1e-12)
    # the optical axis (camera z) is base x: a camera looking forward
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    for name, value, match in (("camera_xyz", [1.0], "camera_xyz needs 3"),
                               ("camera_quaternion", [0.0] * 4, "non-zero"),
                               ("camera_xyz", ["a", 0.0, 0.0], "list of numbers"),
                               ("solver", "ceres", "solver must be one of"),
                               ("stereo_matching", "klt", "stereo_matching must be one of"),
                               ("precision", "fp64", "precision must be one of"),
                               ("resize_scale", 0.0, r"resize_scale must be in")):
        with pytest.raises(ValueError, match=match):
            check_vo_values(dict(vo_defaults(), **{name: value}))


def test_vo_threshold_and_keyframe_parameters_reach_the_config():
    """0 stands for the mode's value (ROS parameters have no null); a set value wins; a
    bad one is refused with its name."""
    from goodpoint_ros.ros.vo_params import check_vo_values, vo_config, vo_defaults
    base = vo_defaults()
    for mode, threshold, gap in (("stereo", 2.0, 3), ("rgbd", 1.0, 5), ("mono", 1.0, 3)):
        cfg = vo_config(dict(base, mode=mode))
        assert (cfg.pnp_threshold, cfg.keyframe_max_gap) == (None, None)
        assert (cfg.reprojection_threshold, cfg.keyframe_gap) == (threshold, gap), mode
    cfg = vo_config(dict(base, mode="rgbd", pnp_threshold=1.5, keyframe_max_gap=2,
                         keyframe_min_parallax_deg=0.0))
    assert (cfg.reprojection_threshold, cfg.keyframe_gap, cfg.keyframe_min_parallax_deg) == (
        1.5, 2, 0.0)
    for mode, anchors in (("stereo", 0), ("rgbd", 4), ("mono", 4)):      # -1: the mode's
        assert vo_config(dict(base, mode=mode)).anchor_count == anchors
    assert vo_config(dict(base, mode="mono", anchor_keyframes=0)).anchor_count == 0
    assert vo_config(dict(base, anchor_keyframes=2)).anchor_count == 2
    for name, value in (("pnp_threshold", -1.0), ("keyframe_max_gap", -2),
                        ("anchor_keyframes", -2),
                        ("keyframe_min_parallax_deg", -0.5)):
        with pytest.raises(ValueError, match=name):
            check_vo_values(dict(base, **{name: value}))


def test_generated_specs_take_the_dataclass_defaults():
    """Frontend and stereo parameters come from FrontendConfig / StereoParams fields."""
    from goodpoint_ros.frontend.frontend import FrontendConfig
    from goodpoint_ros.frontend.stereo import StereoParams
    f, st = FrontendConfig(), StereoParams()
    for name in ("match", "verification", "ransac_threshold", "rectified", "use_camera_info"):
        assert SPECS[name].default == getattr(f, name), name
    assert SPECS["stereo_row_tolerance"].default == st.row_tolerance
    assert SPECS["min_disparity"].default == st.min_disparity
    assert st.max_disparity is None and SPECS["max_disparity"].default == 0.0   # ROS "off"
    assert "0 = unbounded" in SPECS["max_disparity"].description


def test_pyramid_levels_parameter_unset_takes_the_weights_value():
    meta = {"detection": {"keypoint_threshold": 0.1, "pyramid_levels": 3}}
    assert config_from_params(defaults()).resolved(meta).pyramid_levels == 3
    assert config_from_params(dict(defaults(), pyramid_levels=1)).resolved(meta).scales == (1.0,)
    assert config_from_params(defaults()).resolved({}).pyramid_levels == 1
    with pytest.raises(ValueError, match="pyramid_levels"):
        check_value("pyramid_levels", 9)
    from goodpoint_ros.ros.vo_params import vo_defaults
    assert vo_defaults()["pyramid_levels"] == 1            # the VO runs one level (odometry/config)


def test_upsample_below_parameter_minus_one_takes_the_weights_value_zero_never():
    meta = {"detection": {"upsample_below": 480}}
    assert defaults()["upsample_below"] == -1
    assert config_from_params(defaults()).resolved(meta).upsample_below == 480
    assert config_from_params(dict(defaults(), upsample_below=0)).resolved(meta).frame_scale(
        (320, 240)) == 1.0
    assert config_from_params(dict(defaults(), upsample_below=1000)).resolved(meta).frame_scale(
        (640, 480)) == 2.0
    with pytest.raises(ValueError, match="upsample_below"):
        check_value("upsample_below", -2)


def test_pyramid_factor_parameter_unset_takes_the_weights_value():
    meta = {"detection": {"pyramid_levels": 5, "pyramid_factor": 0.8409}}
    cfg = config_from_params(defaults()).resolved(meta)
    assert cfg.pyramid_factor == 0.8409 and cfg.scales[-1] == pytest.approx(0.5, abs=1e-3)
    assert config_from_params(dict(defaults(), pyramid_factor=0.5)).resolved(meta).scales[1] == 0.5
    assert config_from_params(defaults()).resolved({}).pyramid_factor == pytest.approx(2 ** -0.5)
    with pytest.raises(ValueError, match="pyramid_factor"):
        check_value("pyramid_factor", 0.95)


def test_vo_yaml_comments_give_the_modes_own_defaults():
    """The comments name each mode's PnP threshold, keyframe gap and anchors: they are the
    tables' (odometry/config.py *_BY_MODE), not numbers copied once and left to drift."""
    import re

    from goodpoint_ros.odometry.config import (
        ANCHOR_KEYFRAMES_BY_MODE,
        KEYFRAME_MAX_GAP_BY_MODE,
        PNP_THRESHOLD_BY_MODE,
    )
    text = (ROOT / "config" / "vo.yaml").read_text()
    said = re.search(r"\(stereo ([\d.]+) px / (\d+) frames, rgbd ([\d.]+) px / (\d+), "
                     r"mono ([\d.]+) px / (\d+)\)", text)
    assert said, "the pnp_threshold / keyframe_max_gap comment lost its per-mode figures"
    px, gap = [float(v) for v in said.groups()[::2]], [int(v) for v in said.groups()[1::2]]
    modes = ("stereo", "rgbd", "mono")
    assert px == [PNP_THRESHOLD_BY_MODE[m] for m in modes]
    assert gap == [KEYFRAME_MAX_GAP_BY_MODE[m] for m in modes]
    anchors = re.search(r"\(stereo (\d+),\s*#?\s*rgbd and mono (\d+)\)", text)
    assert anchors and ANCHOR_KEYFRAMES_BY_MODE == {
        "stereo": int(anchors[1]), "rgbd": int(anchors[2]), "mono": int(anchors[2])}
