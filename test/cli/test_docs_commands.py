"""The commands and files the documentation shows exist as written.

A reader copies a command from README.md or docs/; a renamed flag or subcommand left in
the prose fails them with an argparse usage error. Each occurrence of ``goodpoint SUB``
(code blocks and inline code) is checked against the real parser: the subcommand (and
its mode, ``eval vo``, ``export int8``) exists, and every ``--flag`` after it is one of
that parser's options. Every repository path it names (``test/backends/test_tensorrt.py``)
is there, and so is every one a docstring or comment names: tests moved into folders had
left ``pytest test/test_tensorrt.py`` in the README.
"""
import argparse
import re
from pathlib import Path

import pytest

from goodpoint_ros.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "training" / "README.md", *(ROOT / "docs").glob("*.md")])
# a command ends at a shell separator or the end of its code span / line
COMMAND = re.compile(r"(?<![\w/.-])goodpoint ([a-z][a-z-]*)([^`\n&|;]*)")
# a path from the repository root (not src/goodpoint_ros/... of a colcon workspace)
PATH = re.compile(r"(?<![\w/.-])((?:goodpoint_ros|training|test|tools|launch|config|docs|"
                  r"core|backends|deploy|frontend|odometry|ros|evaluation|synthetic|cli)/[\w/.-]*"
                  r"\.(?:py|yaml|md|sh))\b")
# where a path may be rooted: the repository, or the package for its layers (core/config.py)
BASES = (ROOT, ROOT / "goodpoint_ros")
SOURCES = sorted(p for d in ("goodpoint_ros", "training", "tools", "test") for p in (ROOT / d).rglob("*.py"))


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(parser: argparse.ArgumentParser) -> set:
    return {o for action in parser._actions for o in action.option_strings}


def unknown_in(text: str, root: argparse.ArgumentParser) -> list:
    """['goodpoint eval: --bogus', ...] for the commands in ``text`` the parser lacks."""
    bad = []
    for m in COMMAND.finditer(text):
        name, words = m.group(1), m.group(2).split()
        commands = _subparsers(root)
        if name not in commands:
            bad.append(f"goodpoint {name}: no such command")
            continue
        parser, modes = commands[name], _subparsers(commands[name])
        if words and words[0] in modes:
            parser, name = modes[words[0]], f"{name} {words[0]}"
        for w in words:
            flag = w.split("=", 1)[0].rstrip(",.;:)'\"")
            if flag.startswith("--") and len(flag) > 2 and flag not in _options(parser):
                bad.append(f"goodpoint {name}: {flag}")
    return bad


def test_the_checker_sees_a_wrong_flag_and_a_wrong_command():
    root = build_parser()
    assert unknown_in("run `goodpoint eval vo DIR --mode stereo --out x`", root) == []
    assert unknown_in("`goodpoint eval vo DIR --bogus 3`", root) == ["goodpoint eval vo: --bogus"]
    assert unknown_in("goodpoint evaluate x", root) == ["goodpoint evaluate: no such command"]
    # a mode's flag is not the command's: `eval` itself has no --eps
    assert unknown_in("`goodpoint eval --eps 3`", root) == ["goodpoint eval: --eps"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_parse(doc):
    assert unknown_in(doc.read_text(encoding="utf-8"), build_parser()) == []


def missing_paths(text: str) -> list:
    return sorted({p for p in PATH.findall(text) if not any((b / p).exists() for b in BASES)})


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_paths_exist(doc):
    assert missing_paths(doc.read_text(encoding="utf-8")) == []


def test_paths_named_in_docstrings_and_comments_exist():
    missing = {str(f.relative_to(ROOT)): m for f in SOURCES if f.name != Path(__file__).name
               for m in [missing_paths(f.read_text(encoding="utf-8"))] if m}
    assert missing == {}
