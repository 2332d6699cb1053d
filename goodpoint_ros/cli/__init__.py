"""``goodpoint`` command line: one command, one module per subcommand.

Each module in :data:`COMMANDS` has ``add_arguments(parser)`` and
``run(args) -> int``; modules import torch (and the trainer, which needs it) only
inside ``run``, so that ``goodpoint --help`` is quick and works without torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# On small CPUs OpenBLAS's thread pool fights the network's threads: the
# matcher's small matrix products went from 0.2 ms to 13-21 ms inside the
# pipeline (docs/deployment.md). Must be set before numpy is imported; a
# user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import signal
import threading
from typing import List, Optional

from goodpoint_ros import __version__
from goodpoint_ros.cli.common import os_error_line, user_errors

#: name → (module, one-line help).  Other subsystems add their line here.
COMMANDS = {
    "detect": ("goodpoint_ros.cli.detect", "detect keypoints and descriptors in one image"),
    "match": ("goodpoint_ros.cli.match", "match two images (mutual NN + USAC/MAGSAC)"),
    "bench": ("goodpoint_ros.cli.bench", "benchmark per-stage latency against ORB and SIFT"),
    "export": ("goodpoint_ros.cli.export", "export ONNX / int8 ONNX / TensorRT engine / weights; "
               "accuracy gate"),
    "make-sample-bag": ("goodpoint_ros.cli.make_sample_bag",
                        "render a rosbag2 of a textured village with exact depth + poses"),
    "make-sample-stereo": ("goodpoint_ros.cli.make_sample_stereo",
                           "render a rectified stereo sequence of the village (KITTI layout)"),
    "eval": ("goodpoint_ros.cli.eval", "evaluate against ORB/SIFT/AKAZE: homography sets, rosbag2 replay"),
    "train": ("goodpoint_ros.cli.train", "train GoodPoint without labels on a folder of images"),
}

EPILOG = ("Conventions: keypoints are (x, y) in pixels of the original image, pixel centres at "
          "integers. Weights default to the model bundled in the package.")


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: the reason and where help is, not a
    usage block of 30 lines with the reason under it (subcommand parsers inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="goodpoint", description="GoodPoint learned keypoints: detect, match, evaluate, "
        "train and deploy (Belikov & Potapov 2020).", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"goodpoint_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class Terminated(BaseException):
    """SIGTERM as an exception, so ``finally`` / ``except BaseException`` clean-ups run
    (a half-written bag is removed, temp files are unlinked) as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    else:  # pragma: no cover - signals can only be set from the main thread
        previous = None
    try:
        return int(args._run(args) or 0)
    except Terminated:
        print(f"goodpoint {args.command}: terminated", file=sys.stderr)
        return 143
    except user_errors() as exc:
        print(f"goodpoint {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:   # a budget raised past what the machine has
        print(f"goodpoint {args.command}: error: out of memory: {exc}".rstrip(": "),
              file=sys.stderr)
        return 1
    except OSError as exc:   # the machine, not a bug: disk full, read-only file system...
        print(f"goodpoint {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"goodpoint {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
