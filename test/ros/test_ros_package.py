"""ROS 2 packaging, checked for real without ROS 2: manifest, colcon type, CMake, launch."""
import ast
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MSGS = sorted(p.name for p in (ROOT / "msg").glob("*.msg"))

RUNTIME_DEPENDS = {"rclpy", "sensor_msgs", "std_msgs", "message_filters", "cv_bridge",
                   "diagnostic_msgs", "rosidl_default_runtime", "python3-opencv",
                   "python3-numpy", "launch", "launch_ros", "ros2bag"}
BUILD_DEPENDS = {"ament_cmake", "rosidl_default_generators", "std_msgs"}


def test_package_xml_validates_and_declares_every_dependency():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(ROOT))          # raises InvalidPackage on any error
    pkg.evaluate_conditions({"ROS_DISTRO": "jazzy"})
    assert pkg.name == "goodpoint_ros" and pkg.package_format == 3
    assert pkg.licenses == ["MIT"]
    assert pkg.get_build_type() == "ament_cmake"
    exec_deps = {d.name for d in pkg.exec_depends if d.evaluated_condition}
    build_deps = {d.name for d in pkg.build_depends + pkg.buildtool_depends}
    assert RUNTIME_DEPENDS <= exec_deps, RUNTIME_DEPENDS - exec_deps
    assert BUILD_DEPENDS <= build_deps, BUILD_DEPENDS - build_deps
    assert "rosidl_interface_packages" in {g.name for g in pkg.member_of_groups}
    assert {"launch_testing", "ament_cmake_pytest"} <= {d.name for d in pkg.test_depends}
    # Ubuntu 24.04 (Jazzy) has no python3-torch: rosdep must not ask for it there.
    assert "python3-torch" not in exec_deps
    for distro, wanted in (("humble", True), ("jazzy", False)):
        pkg = catkin_pkg.parse_package(str(ROOT))
        pkg.evaluate_conditions({"ROS_DISTRO": distro})
        names = {d.name for d in pkg.exec_depends if d.evaluated_condition}
        assert ("python3-torch" in names) == wanted, distro


def test_package_xml_version_matches_setup_py():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    setup = (ROOT / "setup.py").read_text()
    assert f'version="{catkin_pkg.parse_package(str(ROOT)).version}"' in setup


def test_colcon_discovers_an_ament_cmake_package(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon not installed (pip install colcon-core colcon-ros ...)")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "goodpoint_ros").symlink_to(ROOT, target_is_directory=True)
    out = subprocess.run([colcon, "list"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    # A broken manifest still exits 0 but degrades the type: check the type itself.
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert ["goodpoint_ros", "src/goodpoint_ros", "(ros.ament_cmake)"] in rows, out.stdout + out.stderr


def test_cmake_generates_every_message_and_installs_the_python_package_after_it():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in cmake.splitlines())
    gen = re.search(r"rosidl_generate_interfaces\((.*?)\)", code, re.S).group(1)
    assert sorted(re.findall(r'"msg/(\w+\.msg)"', gen)) == MSGS
    assert "DEPENDENCIES std_msgs" in gen
    # ros2/rosidl_python#141: no ament_python_install_package for our own name.
    assert "ament_python_install_package" not in code
    install_py = code.index("DIRECTORY goodpoint_ros/")
    assert install_py > code.index("rosidl_generate_interfaces(")   # ours wins over the empty one
    assert re.search(r"install\(PROGRAMS .*detector_node.*\n\s*DESTINATION lib/\$\{PROJECT_NAME\}",
                     code)
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in code
    assert code.rstrip().endswith("ament_package()")


def test_no_hand_written_module_is_called_msg():
    pkg = ROOT / "goodpoint_ros"
    assert not (pkg / "msg.py").exists() and not (pkg / "msg").exists()


def test_console_script_points_at_the_node():
    assert '"detector_node = goodpoint_ros.ros.node:main"' in (ROOT / "setup.py").read_text()


def _launch_arguments(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            names.add(node.args[0].value)
    return tree, names


def test_launch_files_compile_and_declare_their_arguments(tmp_path):
    for f in ("detector.launch.py", "replay.launch.py"):
        py_compile.compile(str(ROOT / "launch" / f), cfile=str(tmp_path / (f + "c")), doraise=True)
    _, names = _launch_arguments(ROOT / "launch" / "detector.launch.py")
    assert {"image", "left_image", "right_image", "camera_info", "mode", "backend", "precision",
            "params_file", "namespace", "use_sim_time"} <= names
    tree, names = _launch_arguments(ROOT / "launch" / "replay.launch.py")
    assert {"bag", "rate"} <= names
    src = (ROOT / "launch" / "replay.launch.py").read_text()
    assert '"ros2", "bag", "play"' in src and '"--clock"' in src
    assert '("use_sim_time", "true")' in src


def test_launch_remappings_match_the_node_topic_defaults():
    from goodpoint_ros.ros.params import SPECS
    src = (ROOT / "launch" / "detector.launch.py").read_text()
    for param in ("image_topic", "camera_info_topic", "left_image_topic", "right_image_topic",
                  "left_camera_info_topic", "right_camera_info_topic"):
        assert f'("{SPECS[param].default}", arg(' in src, param


def test_vo_launch_remappings_match_the_vo_node_topic_defaults():
    """launch/vo.launch.py remaps the vo_node's relative topic defaults (vo_params.py)."""
    from goodpoint_ros.ros.vo_params import VO_SPECS
    tree = ast.parse((ROOT / "launch" / "vo.launch.py").read_text())
    topics = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "topics")
    for arg, default in topics.items():
        assert VO_SPECS[f"{arg}_topic"].default == default, arg
    assert {f"{a}_topic" for a in topics} == {n for n in VO_SPECS if n.endswith("_topic")}
