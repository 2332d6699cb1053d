"""pytest plugin of the real-ROS 2 tier (tools/ros/tier.sh loads it with -p).

In this tier a skipped test is a failure (a shadowed goodpoint_ros.msg or a
missing wheel must not pass quietly), with one exception: tests of the data
in ../shared skip when that folder is absent, and say so in one loud line.
Writes "M passed, F failed, S skipped" to $GOODPOINT_TIER_SUMMARY for the
Makefile's one-line summary.
"""
from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[4] / "shared"
_counts = {"passed": 0, "failed": 0, "skipped": 0}
_bad_skips, _shared_skips = [], []


def _reason(report) -> str:
    lr = report.longrepr
    return lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def pytest_runtest_logreport(report):
    if report.failed:
        _counts["failed"] += 1
    elif report.skipped:
        _counts["skipped"] += 1
        reason = _reason(report)
        if not SHARED.exists() and str(SHARED) in reason:
            _shared_skips.append(report.nodeid)
        else:
            _bad_skips.append((report.nodeid, reason))
    elif report.when == "call":
        _counts["passed"] += 1


def pytest_sessionfinish(session, exitstatus):
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.ensure_newline()          # after the progress dots
    say = (tr.write_line if tr is not None else print)
    for nodeid, reason in _bad_skips:
        say(f"ROS TIER: a skip is a failure here: {nodeid}: {reason}")
    if _bad_skips and session.exitstatus == 0:
        session.exitstatus = 1
    if _shared_skips:
        say(f"ROS TIER: {len(_shared_skips)} test(s) of ../shared data SKIPPED: {SHARED} is absent")
    if sum(_counts.values()) == 0 and session.exitstatus == 0:
        say("ROS TIER: no test ran")
        session.exitstatus = 1
    out = os.environ.get("GOODPOINT_TIER_SUMMARY")
    if out:
        text = ", ".join(f"{v} {k}" for k, v in _counts.items())
        Path(out).write_text(text + "\n", encoding="utf-8")
