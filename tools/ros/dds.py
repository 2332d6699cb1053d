"""Drive the real detector node over DDS: start it as a user would, talk to it.

Shared by the ROS tier's end-to-end tests (test/ros/test_dds_*.py), `make
ros-demo` and the latency benchmark.  Needs the tier's environment
(tools/ros/env.sh run: real rclpy, the colcon-built goodpoint_ros).

* :func:`start_node` runs the installed ``detector_node`` (what ``ros2 run
  goodpoint_ros detector_node`` runs) in its own process with ``--ros-args
  --params-file``, on a ROS domain of its own, discovery limited to this host.
* :class:`Probe` is a node in the calling process, in its own rclpy context on
  the same domain, spun by a single-threaded executor in the calling thread
  (rclpy's multi-threaded executor gave 0.1–1.3 s latency spikes here).
"""
from __future__ import annotations

import array
import itertools
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "hpatches_v_churchill"
NODE = "goodpoint_detector"

#: ROS domains handed out in this process (0..232 are valid with the default ports).
_DOMAINS = itertools.count(int(os.environ.get("ROS_DOMAIN_ID", "100")) % 200 + 1)


def next_domain() -> int:
    """A ROS_DOMAIN_ID no other node of this process uses."""
    return next(_DOMAINS) % 230 + 1


def node_executable(executable: str = "detector_node") -> Path:
    """The installed entry point, found as ``ros2 run`` finds it (ament index)."""
    from ament_index_python.packages import get_package_prefix
    exe = Path(get_package_prefix("goodpoint_ros")) / "lib" / "goodpoint_ros" / executable
    if not exe.is_file():
        raise FileNotFoundError(f"{exe} missing: run `make ros-build`")
    return exe


def bundled_images(n: int) -> List[np.ndarray]:
    """``n`` BGR frames cycling through the bundled HPatches sequence (6 real photos)."""
    files = sorted(SAMPLE.glob("*.png"), key=lambda p: int(p.stem))
    imgs = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    return [imgs[i % len(imgs)] for i in range(n)]


class NodeProcess:
    """A running node process (``detector_node``, ``vo_node``); :meth:`stop` sends SIGINT like Ctrl-C."""

    def __init__(self, proc: subprocess.Popen, log: Path, params: Path):
        self.proc, self.log_path, self.params_path = proc, log, params

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, wait; the exit code (killed after ``timeout``: -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode


def start_node(params: Dict, domain: int, workdir: Path, name: str = NODE,
               extra_env: Optional[Dict] = None, executable: str = "detector_node",
               config: str = "detector.yaml") -> NodeProcess:
    """``<executable> --ros-args --params-file <workdir>/params.yaml`` on ``domain``.

    ``params``: ros__parameters overriding ``config/<config>`` (the shipped file
    is loaded first, as the launch files do); ``name``: the node's name
    (``-r __node:=name``; topics are under ``/<name>/``); ``executable``:
    ``detector_node`` or ``vo_node`` (with ``config="vo.yaml"``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    params_file = workdir / "params.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(params)}}))
    log = workdir / "node.log"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **(extra_env or {}))
    cmd = [str(node_executable(executable)), "--ros-args", "-r", f"__node:={name}",
           "--params-file", str(ROOT / "config" / config),
           "--params-file", str(params_file)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=str(workdir))
    return NodeProcess(proc, log, params_file)


# --------------------------------------------------------------------------- messages

def image_msg(img: np.ndarray, encoding: str, sec: int, nanosec: int = 0, frame_id: str = "camera"):
    """sensor_msgs/Image of a uint8 image (mono8 [H,W] or bgr8 [H,W,3])."""
    from sensor_msgs.msg import Image
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    msg.height, msg.width = img.shape[:2]
    msg.encoding, msg.is_bigendian = encoding, 0
    msg.step = img.shape[1] * (1 if img.ndim == 2 else img.shape[2])
    msg.data = array.array("B", np.ascontiguousarray(img).tobytes())
    return msg


def compressed_msg(img: np.ndarray, fmt: str, sec: int, nanosec: int = 0, frame_id: str = "camera"):
    """sensor_msgs/CompressedImage (``fmt``: "png" or "jpeg")."""
    from sensor_msgs.msg import CompressedImage
    ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else fmt), img)
    assert ok
    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    msg.format = fmt
    msg.data = array.array("B", buf.tobytes())
    return msg


def stamp_of(msg) -> tuple:
    h = getattr(msg, "header", msg)
    return (h.stamp.sec, h.stamp.nanosec)


def header_key(h) -> tuple:
    return (h.stamp.sec, h.stamp.nanosec, h.frame_id)


# --------------------------------------------------------------------------- probe

class Probe:
    """A test / demo node on ``domain`` in this process, in a context of its own."""

    def __init__(self, domain: int, name: str = "goodpoint_probe"):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.inboxes: Dict[str, list] = {}
        self.arrivals: Dict[str, list] = {}

    def publisher(self, msg_type, topic: str, qos=None):
        from rclpy.qos import qos_profile_sensor_data
        return self.node.create_publisher(msg_type, topic, qos or qos_profile_sensor_data)

    def listen(self, msg_type, topic: str, depth: int = 1000) -> list:
        """Every message on ``topic`` (reliable, deep history), with arrival times."""
        msgs, times = [], []
        self.inboxes[topic], self.arrivals[topic] = msgs, times

        def cb(msg):
            times.append(time.perf_counter())
            msgs.append(msg)
        self.node.create_subscription(msg_type, topic, cb, depth)
        return msgs

    def spin_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_for_node(self, publishers: Sequence, topics: Sequence[str], node: Optional[NodeProcess] = None,
                      timeout: float = 60.0) -> bool:
        """Until ``publishers`` have a subscriber and every listened ``topics`` a publisher
        (the node has loaded its model and made its endpoints); False if it died first."""
        def ready():
            if node is not None and not node.alive():
                raise RuntimeError("the node exited:\n" + node.output()[-3000:])
            return (all(p.get_subscription_count() > 0 for p in publishers)
                    and all(self.node.count_publishers(t) > 0 for t in topics))
        return self.spin_until(ready, timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def params_client(probe: Probe, node_name: str = NODE):
    """(set_parameters(dict, atomically=False), get_parameters(names) → values),
    through the node's real parameter services."""
    from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
    from rclpy.parameter import Parameter, parameter_value_to_python
    set_cli = probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    atomic_cli = probe.node.create_client(SetParametersAtomically,
                                          f"/{node_name}/set_parameters_atomically")
    get_cli = probe.node.create_client(GetParameters, f"/{node_name}/get_parameters")
    for cli in (set_cli, atomic_cli, get_cli):
        if not probe.spin_until(cli.service_is_ready, 30.0):
            raise TimeoutError(f"{cli.srv_name} not available")

    def call(cli, request):
        future = cli.call_async(request)
        if not probe.spin_until(future.done, 30.0):
            raise TimeoutError(f"{cli.srv_name}: no answer")
        return future.result()

    def set_parameters(values: Dict, atomically: bool = False):
        """[SetParametersResult] per value, or one result for the atomic service."""
        req = (SetParametersAtomically if atomically else SetParameters).Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        if atomically:
            return call(atomic_cli, req).result
        return call(set_cli, req).results

    def get_parameters(names: Sequence[str]):
        req = GetParameters.Request()
        req.names = list(names)
        return [parameter_value_to_python(v) for v in call(get_cli, req).values]

    return set_parameters, get_parameters


def quantiles(values: Sequence[float], qs=(0.5, 0.9)) -> List[float]:
    return [float(np.quantile(np.asarray(values, float), q)) for q in qs]


def tmpdir(prefix: str = "goodpoint-dds-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
