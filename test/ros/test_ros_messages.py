"""goodpoint_ros/msg: the real ROS 2 parser, CDR round trips with rosbags, field helpers."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from goodpoint_ros.core.keypoints import Features
from goodpoint_ros.core.matching import MatchResult
from goodpoint_ros.core.pipeline import StageTimes
from goodpoint_ros.frontend.scheduler import SchedulerStats
from goodpoint_ros.ros import messages as gm

ROOT = Path(__file__).resolve().parents[2]
MSG_DIR = ROOT / "msg"
NAMES = ("Keypoints", "Matches", "Status")
RNG = np.random.default_rng(1)

#: What a consumer relies on: every field's type (ROS 2 .msg spelling).
EXPECTED_FIELDS = {
    "Keypoints": {"header": "std_msgs/Header", "width": "uint32", "height": "uint32",
                  "x": "float32[]", "y": "float32[]", "scores": "float32[]",
                  "track_ids": "uint64[]", "descriptor_size": "uint32",
                  "descriptor_encoding": "uint8", "descriptors": "float32[]",
                  "descriptors_uint8": "uint8[]", "descriptor_scale": "float32"},
    "Matches": {"header": "std_msgs/Header", "query_header": "std_msgs/Header",
                "train_header": "std_msgs/Header", "query_indices": "uint32[]",
                "train_indices": "uint32[]", "distances": "float32[]", "inliers": "bool[]",
                "disparities": "float32[]", "model_type": "uint8", "model": "float64[9]",
                "rotation": "float64[9]", "translation": "float64[3]"},
    "Status": {"header": "std_msgs/Header", "backend": "string", "precision": "string",
               "device": "string", "preprocess_ms": "float32", "network_ms": "float32",
               "postprocess_ms": "float32", "callback_ms": "float32",
               "frames_received": "uint64", "frames_processed": "uint64",
               "frames_dropped": "uint64", "frames_skipped": "uint64",
               "num_keypoints": "uint32", "num_matches": "uint32", "num_inliers": "uint32"},
}

ROSIDL_SCRIPT = r"""
import json, sys
from rosidl_adapter.parser import parse_message_string
out = {}
for path in sys.argv[1:]:
    name = path.rsplit('/', 1)[-1][:-4]
    spec = parse_message_string('goodpoint_ros', name, open(path).read())
    fields = {}
    for f in spec.fields:
        t = f.type
        base = (t.pkg_name + '/' + t.type) if t.pkg_name else t.type
        if t.is_array:
            base += '[%s]' % (t.array_size or '')
        fields[f.name] = base
    out[name] = {'fields': fields, 'constants': {c.name: c.value for c in spec.constants}}
print(json.dumps(out))
"""


def rosidl_python():
    """Debian's python3 with python3-rosidl (apt), or None."""
    py = shutil.which("python3", path="/usr/bin")
    if not py:
        return None
    probe = subprocess.run([py, "-c", "import rosidl_adapter.parser"], capture_output=True)
    return py if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def rosidl_specs():
    py = rosidl_python()
    if py is None:
        pytest.skip("the ROS 2 .msg parser is not installed (apt-get install python3-rosidl)")
    paths = [str(MSG_DIR / f"{n}.msg") for n in NAMES]
    proc = subprocess.run([py, "-c", ROSIDL_SCRIPT, *paths], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_msg_files_pass_the_ros2_parser_with_the_intended_types(rosidl_specs):
    for name in NAMES:
        assert rosidl_specs[name]["fields"] == EXPECTED_FIELDS[name], name


def test_msg_constants_agree_with_the_python_helpers(rosidl_specs):
    c = rosidl_specs["Keypoints"]["constants"]
    assert c == {"DESCRIPTOR_FLOAT32": gm.DESCRIPTOR_FLOAT32,
                 "DESCRIPTOR_UINT8_AFFINE": gm.DESCRIPTOR_UINT8_AFFINE}
    c = rosidl_specs["Matches"]["constants"]
    assert c == {f"MODEL_{k.upper()}": v for k, v in gm.MODEL_TYPES.items()}


def test_python_type_tables_cover_every_sequence_field():
    for name, fields in EXPECTED_FIELDS.items():
        for field, typ in fields.items():
            if typ.endswith("[]") and typ != "bool[]":
                assert field in gm.SEQUENCE_TYPECODES, field
                code = gm.SEQUENCE_TYPECODES[field]
                assert np.dtype(code) == np.dtype(typ[:-2]), field
            elif typ == "bool[]":
                assert field in gm.BOOL_SEQUENCES
            elif typ.startswith("float64["):
                assert gm.FIXED_ARRAYS[field] == int(typ[8:-1])


# --------------------------------------------------------------------------- rosbags CDR

@pytest.fixture(scope="module")
def typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for n in NAMES:
        types.update(get_types_from_msg((MSG_DIR / f"{n}.msg").read_text(), f"goodpoint_ros/msg/{n}"))
    store.register(types)
    return store


def header(store, sec, nsec, frame):
    T = store.types
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                     frame_id=frame)


def fake_features(n=37, dim=256):
    d = RNG.normal(size=(n, dim)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = RNG.uniform(0, 500, (n, 2)).astype(np.float32)
    return Features(k, RNG.uniform(0.02, 1, n).astype(np.float32), d, (640, 480))


def round_trip(store, msg, typename):
    raw = store.serialize_cdr(msg, typename)
    return store.deserialize_cdr(raw, typename)


@pytest.mark.parametrize("encoding", ["float32", "uint8"])
def test_keypoints_round_trip_through_cdr(typestore, encoding):
    feats = fake_features()
    ids = np.arange(100, 100 + len(feats), dtype=np.uint64)
    fields = gm.keypoints_fields(feats, ids, encoding)
    msg = typestore.types["goodpoint_ros/msg/Keypoints"](
        header=header(typestore, 12, 345, "cam0"), **fields)
    back = round_trip(typestore, msg, "goodpoint_ros/msg/Keypoints")
    assert back.header.stamp.sec == 12 and back.header.frame_id == "cam0"
    parsed, parsed_ids = gm.parse_keypoints(back)
    np.testing.assert_array_equal(parsed.keypoints, feats.keypoints)
    np.testing.assert_array_equal(parsed.scores, feats.scores)
    np.testing.assert_array_equal(parsed_ids, ids)
    assert parsed.image_size == (640, 480)
    if encoding == "float32":
        np.testing.assert_array_equal(parsed.descriptors, feats.descriptors)
    else:
        assert back.descriptors.size == 0 and back.descriptors_uint8.size == feats.descriptors.size
        # Distances between quantised descriptors stay within 1 % of the float ones.
        d_true = np.linalg.norm(feats.descriptors[:, None] - feats.descriptors[None], axis=-1)
        d_q = np.linalg.norm(parsed.descriptors[:, None] - parsed.descriptors[None], axis=-1)
        assert np.abs(d_q - d_true).max() < 0.01 * 2


def test_empty_keypoints_round_trip(typestore):
    fields = gm.keypoints_fields(Features.empty((320, 240)), None, "uint8")
    msg = typestore.types["goodpoint_ros/msg/Keypoints"](header=header(typestore, 0, 0, ""), **fields)
    parsed, ids = gm.parse_keypoints(round_trip(typestore, msg, "goodpoint_ros/msg/Keypoints"))
    assert len(parsed) == 0 and len(ids) == 0 and parsed.descriptors.shape == (0, 256)


@pytest.mark.parametrize("kind", ["none", "homography", "essential", "stereo"])
def test_matches_round_trip_through_cdr(typestore, kind):
    m = RNG.integers(0, 50, (20, 2))
    res = MatchResult(m, RNG.uniform(0, 0.8, 20).astype(np.float32), RNG.random(20) > 0.3)
    if kind in ("homography", "essential"):
        res.model_type, res.model = kind, RNG.normal(size=(3, 3))
    if kind == "essential":
        res.rotation, res.translation = np.eye(3), np.array([0.6, 0.0, 0.8])
    if kind == "stereo":
        res.disparities = RNG.uniform(0, 90, 20).astype(np.float32)
    h = [header(typestore, s, 0, "cam") for s in (2, 1, 2)]
    msg = typestore.types["goodpoint_ros/msg/Matches"](
        header=h[0], query_header=h[1], train_header=h[2], **gm.matches_fields(res))
    back = round_trip(typestore, msg, "goodpoint_ros/msg/Matches")
    assert back.query_header.stamp.sec == 1 and back.train_header.stamp.sec == 2
    parsed = gm.parse_matches(back)
    np.testing.assert_array_equal(parsed.matches, m)
    np.testing.assert_array_equal(parsed.inliers, res.inliers)
    np.testing.assert_array_equal(parsed.distances, res.distances)
    assert parsed.model_type == res.model_type
    if kind != "none":
        np.testing.assert_array_equal(parsed.model, res.model)
    if kind == "essential":
        np.testing.assert_array_equal(parsed.rotation, np.eye(3))
        np.testing.assert_array_equal(parsed.translation, res.translation)
    if kind == "stereo":
        np.testing.assert_array_equal(parsed.disparities, res.disparities)
    else:
        assert getattr(parsed, "disparities", None) is None


def test_status_round_trip_and_bag_file(typestore, tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    fields = gm.status_fields("torch", "fp32", "cpu", StageTimes(1.5, 20.25, 3.0), 30.0,
                              SchedulerStats(10, 7, 3, 0), 2, 500, 120, 90)
    T = typestore.types
    bag = tmp_path / "status_bag"
    with Writer(bag, version=8) as writer:
        conn = writer.add_connection("/goodpoint/status", "goodpoint_ros/msg/Status",
                                     typestore=typestore)
        for i in range(3):
            msg = T["goodpoint_ros/msg/Status"](header=header(typestore, i, 0, "cam"), **fields)
            writer.write(conn, i * 10**9, typestore.serialize_cdr(msg, "goodpoint_ros/msg/Status"))
    with AnyReader([bag], default_typestore=typestore) as reader:
        got = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert [g.header.stamp.sec for g in got] == [0, 1, 2]
    g = got[-1]
    assert (g.backend, g.frames_received, g.frames_dropped, g.frames_skipped) == ("torch", 10, 3, 2)
    assert g.network_ms == pytest.approx(20.25) and g.num_inliers == 90


def test_inconsistent_messages_are_rejected():
    fields = gm.keypoints_fields(fake_features(5), None)
    fields["y"] = fields["y"][:4]
    with pytest.raises(gm.MessageError, match="disagree"):
        gm.parse_keypoints(fields)
    fields = gm.keypoints_fields(fake_features(5), None)
    fields["descriptor_encoding"] = 7
    with pytest.raises(gm.MessageError, match="descriptor_encoding"):
        gm.parse_keypoints(fields)
    with pytest.raises(ValueError):
        gm.keypoints_fields(fake_features(5), np.arange(4))


def test_to_rclpy_gives_exact_array_typecodes():
    import array
    fields = gm.keypoints_fields(fake_features(4), np.arange(4, dtype=np.uint64), "uint8")
    ros = gm.to_rclpy(fields)
    assert isinstance(ros["x"], array.array) and ros["x"].typecode == "f"
    assert ros["track_ids"].typecode == "Q" and list(ros["track_ids"]) == [0, 1, 2, 3]
    assert ros["descriptors_uint8"].typecode == "B"
    assert ros["descriptors_uint8"].tobytes() == fields["descriptors_uint8"].tobytes()
    assert type(ros["width"]) is int and type(ros["descriptor_scale"]) is float
    m = gm.to_rclpy(gm.matches_fields(MatchResult(np.array([[0, 1]]), np.array([0.1]),
                                                  np.array([True]), "homography", np.eye(3))))
    assert m["query_indices"].typecode == "I" and m["inliers"] == [True]
    assert m["model"].dtype == np.float64 and m["model"].shape == (9,)
