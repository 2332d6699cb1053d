"""`make demo` (README's first command) end to end, on fewer frames."""
import json
import subprocess
import sys

import numpy as np


def test_demo_runs_every_step_and_writes_its_results(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "goodpoint_ros.cli.demo", "--out", str(out),
                        "--frames", "8"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for step in range(1, 6):
        assert f"== {step}." in p.stdout, p.stdout
    for name in ("keypoints.png", "matches.png", "report_homography/report.md",
                 "report_bag/report.md", "report_vo/report.md", "report_vo/trajectory.png",
                 "report_vo/trajectory_goodpoint.tum"):
        assert (out / name).stat().st_size > 0, name
    homography = json.loads((out / "eval_homography.json").read_text())
    assert set(homography["methods"]) == {"goodpoint", "orb", "sift", "akaze"}
    vo = json.loads((out / "eval_vo.json").read_text())["methods"]
    assert set(vo) == {"goodpoint", "orb", "sift", "akaze"}
    gp = vo["goodpoint"]           # a short, exactly known drive: the odometry follows it
    assert gp["lost_count"] == 0 and np.isfinite(gp["ate"]["rmse"])
    assert gp["ate"]["rmse"] < 0.05 * gp["path_length_m"]
