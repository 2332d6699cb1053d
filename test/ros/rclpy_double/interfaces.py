"""Message classes for the double, typed like rclpy's generated ones.

Each class takes exactly its fields (unknown names raise AttributeError, like
rclpy's __slots__) and checks values the way rosidl_generator_py's setters
do: float fields want a float, numeric sequences an array.array of the right
typecode (or a sequence of numbers), fixed arrays the right length.
"""
from __future__ import annotations

import array
import re
from pathlib import Path

import numpy as np

TYPECODES = {"float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h",
             "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}
INTS = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "char"}
FLOATS = {"float32", "float64"}
REGISTRY = {}          # "pkg/Name" → class


def _default(typ: str, pkg: str):
    base, arr = _split(typ)
    if arr is not None:
        if arr == "":
            return array.array(TYPECODES[base]) if base in TYPECODES else []
        n = int(arr)
        if base in FLOATS:
            return np.zeros(n, np.float64 if base == "float64" else np.float32)
        return [_default(base, pkg) for _ in range(n)]
    if base in INTS:
        return 0
    if base in FLOATS:
        return 0.0
    if base == "bool":
        return False
    if base == "string":
        return ""
    if base == "byte":
        return b"\x00"
    return _resolve(base, pkg)()


def _split(typ):
    m = re.fullmatch(r"([\w/]+)(?:\[(\d*)\])?", typ)
    return m.group(1), m.group(2)


def _resolve(base, pkg):
    key = base if "/" in base else f"{pkg}/{base}"
    if base == "Header":
        key = "std_msgs/Header"
    return REGISTRY[key]


def _check(name, typ, pkg, value):
    base, arr = _split(typ)
    if arr is not None:
        if arr == "" and base in TYPECODES:
            if isinstance(value, array.array):
                assert value.typecode == TYPECODES[base], \
                    f"{name}: array typecode {value.typecode!r}, expected {TYPECODES[base]!r}"
                return value
            assert not isinstance(value, np.ndarray), \
                f"{name}: rclpy's {typ} setter rejects numpy arrays; use array.array"
            ok = float if base in FLOATS else int
            assert all(isinstance(v, ok) for v in value), f"{name}: {typ} wants {ok.__name__}s"
            return array.array(TYPECODES[base], value)
        if arr == "":
            return [_check(name, base, pkg, v) for v in value]
        n = int(arr)
        assert len(value) == n, f"{name}: {typ} needs {n} values, got {len(value)}"
        if base in FLOATS:
            return np.asarray(value, np.float64 if base == "float64" else np.float32)
        return [_check(name, base, pkg, v) for v in value]
    if base in INTS:
        assert isinstance(value, int) and not isinstance(value, bool), \
            f"{name}: {typ} wants int, got {value!r}"
        return value
    if base in FLOATS:
        assert isinstance(value, float), f"{name}: {typ} wants float, got {value!r}"
        return value
    if base == "bool":
        assert isinstance(value, bool), f"{name}: bool wants bool, got {value!r}"
        return value
    if base == "string":
        assert isinstance(value, str), f"{name}: string wants str"
        return value
    if base == "byte":
        assert isinstance(value, bytes) and len(value) == 1, f"{name}: byte wants bytes of length 1"
        return value
    cls = _resolve(base, pkg)
    assert isinstance(value, cls), f"{name}: wants {cls.__name__}, got {type(value).__name__}"
    return value


class Message:
    _fields: dict = {}
    _pkg = ""

    def __init__(self, **kwargs):
        for name, typ in self._fields.items():
            object.__setattr__(self, name, _default(typ, self._pkg))
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __setattr__(self, name, value):
        if name not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        object.__setattr__(self, name, _check(name, self._fields[name], self._pkg, value))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(self._fields)})"


def define(pkg: str, name: str, text: str):
    """A message class from .msg text (fields and constants)."""
    fields, consts = {}, {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        typ, rest = line.split(None, 1)
        if "=" in rest:
            cname, value = (s.strip() for s in rest.split("=", 1))
            consts[cname] = int(value) if typ in INTS else (
                bytes([int(value)]) if typ == "byte" else float(value) if typ in FLOATS else value)
        else:
            fields[rest.split()[0]] = typ
    cls = type(name, (Message,), {"_fields": fields, "_pkg": pkg, **consts})
    REGISTRY[f"{pkg}/{name}"] = cls
    return cls


ROS_MESSAGES = {
    "builtin_interfaces": {"Time": "int32 sec\nuint32 nanosec"},
    "std_msgs": {"Header": "builtin_interfaces/Time stamp\nstring frame_id"},
    "sensor_msgs": {
        "Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
                 "uint8 is_bigendian\nuint32 step\nuint8[] data",
        "CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
        "CameraInfo": "std_msgs/Header header\nuint32 height\nuint32 width\n"
                      "string distortion_model\nfloat64[] d\nfloat64[9] k\nfloat64[9] r\n"
                      "float64[12] p\nuint32 binning_x\nuint32 binning_y",
    },
    # visual odometry (goodpoint_ros.ros.vo_node)
    "geometry_msgs": {
        "Point": "float64 x\nfloat64 y\nfloat64 z",
        "Vector3": "float64 x\nfloat64 y\nfloat64 z",
        "Quaternion": "float64 x\nfloat64 y\nfloat64 z\nfloat64 w",
        "Pose": "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation",
        "Twist": "geometry_msgs/Vector3 linear\ngeometry_msgs/Vector3 angular",
        "PoseWithCovariance": "geometry_msgs/Pose pose\nfloat64[36] covariance",
        "TwistWithCovariance": "geometry_msgs/Twist twist\nfloat64[36] covariance",
        "PoseStamped": "std_msgs/Header header\ngeometry_msgs/Pose pose",
        "Transform": "geometry_msgs/Vector3 translation\ngeometry_msgs/Quaternion rotation",
        "TransformStamped": "std_msgs/Header header\nstring child_frame_id\n"
                            "geometry_msgs/Transform transform",
    },
    "nav_msgs": {
        "Odometry": "std_msgs/Header header\nstring child_frame_id\n"
                    "geometry_msgs/PoseWithCovariance pose\ngeometry_msgs/TwistWithCovariance twist",
        "Path": "std_msgs/Header header\ngeometry_msgs/PoseStamped[] poses",
    },
    "diagnostic_msgs": {
        "KeyValue": "string key\nstring value",
        "DiagnosticStatus": "byte OK=0\nbyte WARN=1\nbyte ERROR=2\nbyte STALE=3\nbyte level\n"
                            "string name\nstring message\nstring hardware_id\n"
                            "diagnostic_msgs/KeyValue[] values",
        "DiagnosticArray": "std_msgs/Header header\ndiagnostic_msgs/DiagnosticStatus[] status",
    },
}


def build(msg_dir: Path):
    """{package: {Name: class}} for the ROS messages the node uses and goodpoint_ros/msg."""
    out = {}
    for pkg, msgs in ROS_MESSAGES.items():
        out[pkg] = {n: define(pkg, n, t) for n, t in msgs.items()}
    out["goodpoint_ros"] = {p.stem: define("goodpoint_ros", p.stem, p.read_text())
                            for p in sorted(Path(msg_dir).glob("*.msg"))}
    return out
