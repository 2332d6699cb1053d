"""Options and helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import cv2

from goodpoint_ros.backends import BackendUnavailable
from goodpoint_ros.core.config import GoodPointConfig, field_info
from goodpoint_ros.core.imageio import ImageError
from goodpoint_ros.core.pipeline import FeatureExtractor
from goodpoint_ros.core.weights import WeightsError, atomic_write_bytes


class UserError(RuntimeError):
    """Bad input from the user: printed as one line, exit status 2."""


def user_errors():
    """Exception types that mean bad input, not a bug (no traceback for these)."""
    return (UserError, ImageError, WeightsError, BackendUnavailable, ValueError,
            FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def os_error_line(exc: OSError) -> str:
    """An OSError from writing (read-only file system, disk full...) as one line."""
    what = exc.strerror or str(exc)
    where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
    return f"{what}{where}"


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are one file: same path after resolving symlinks, or
    the same inode (a hard link)."""
    try:
        if a.resolve() == b.resolve():
            return True
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def refuse_clobber(inputs: Iterable, outputs: Iterable) -> None:
    """Refuse outputs that would destroy an input, before anything is computed.

    An output may not be an input (the same file, through a symlink or a hard
    link), an existing file inside an input folder, or a folder holding an
    input (``--report`` replaces its folder as a whole); two outputs may not be
    the same file.  ``None`` entries are ignored.  Raises :class:`UserError`.
    """
    ins = [Path(p) for p in inputs if p]
    outs = [Path(p) for p in outputs if p]
    for o in outs:
        for i in ins:
            if _same_file(o, i):
                raise UserError(f"refusing to write {o}: it is the input {i} "
                                "(pick another output path)")
            if i.is_dir() and o.is_file() and _inside(o, i):
                raise UserError(f"refusing to write {o}: it is a file inside the input folder {i}")
            if i.exists() and o.exists() and o.is_dir() and _inside(i, o):
                raise UserError(f"refusing to write {o}: it holds the input {i}")
    for a, b in itertools.combinations(outs, 2):
        if _same_file(a, b):
            raise UserError(f"two outputs are the same file: {a} and {b}")


def check_image_output(path) -> None:
    """Refuse an ``--out`` picture path OpenCV cannot encode (e.g. ``vis.txt``), checked
    before the network runs: a failed encode afterwards would throw the result away."""
    if not path:
        return
    ext = Path(path).suffix.lower()
    if not ext or not cv2.haveImageWriter("x" + ext):
        raise UserError(f"cannot write a picture to {path}: unknown image extension "
                        f"{ext or '(none)'!r} (use .png or .jpg)")


def check_plot_output(path) -> None:
    """Refuse a plot path matplotlib has no format for (e.g. ``latency.txt``), before the
    work whose result it draws."""
    if not path:
        return
    import matplotlib  # lazy: only a command asked for a plot pays for it
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    ext = Path(path).suffix.lower().lstrip(".")
    kinds = Figure().canvas.get_supported_filetypes()
    if ext not in kinds:
        shown = f".{ext}" if ext else "(none)"
        raise UserError(f"cannot write a plot to {path}: unknown extension {shown!r} "
                        "(use .png, .svg or .pdf)")


def check_writable(*paths) -> None:
    """Refuse, before any work, an output whose folder cannot be written.

    Walks up to the nearest existing folder (the one the writer would create
    the rest in) and writes + fsyncs a small probe file there, so a read-only
    or full file system is found now, not after an hour of evaluation.
    """
    for path in paths:
        if not path:
            continue
        p = Path(path)
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UserError(f"cannot write {p}: {parent} is a file, not a folder")
        try:
            fd, probe = tempfile.mkstemp(prefix=".goodpoint-probe.", dir=parent)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise UserError(f"cannot write {p}: {os_error_line(exc)}") from None


def check_outputs(inputs: Iterable, outputs: Iterable, image_outputs: Iterable = (),
                  folders: Iterable = ()) -> None:
    """All output checks a writing command runs before it computes anything: ``outputs``
    and ``image_outputs`` are files (an existing folder there is refused: the atomic
    rename would fail only after the work), ``folders`` are written as a whole."""
    outputs = [o for o in outputs if o]
    image_outputs = [o for o in image_outputs if o]
    folders = [o for o in folders if o]
    refuse_clobber(inputs, outputs + image_outputs + folders)
    for o in outputs + image_outputs:
        if Path(o).is_dir():
            raise UserError(f"cannot write {o}: it is a folder (name a file, in it or elsewhere)")
    for o in folders:
        if Path(o).exists() and not Path(o).is_dir():
            raise UserError(f"cannot write {o}: it is a file, not a folder (name a folder)")
    for o in image_outputs:
        check_image_output(o)
    check_writable(*outputs, *image_outputs, *folders)


def parse_size(text: str):
    """'320x240' → (320, 240)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}")
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size too small: {text}")
    return w, h


def bounded(kind: type = int, low=None, high=None, *, above=None):
    """An argparse ``type=``: ``kind(text)`` within ``[low, high]``, or ``(above, high]``.

    The range is checked when the flag is parsed, so a count of 0 or a negative
    threshold is one line naming the flag (``argument --frames: must be >= 1, got 0``)
    before any work, not a traceback or a run with a meaningless value.
    """
    lower = f"[{low:g}" if low is not None else f"({above:g}" if above is not None else None
    if high is not None:
        rule = f"in {lower or '(-inf'}, {high:g}]"
    else:
        rule = f">= {low:g}" if low is not None else f"> {above:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (low is not None and not value >= low) or (above is not None and not value > above) \
                or (high is not None and not value <= high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = kind.__name__      # argparse names the type in its messages
    return parse


def comma_list(text: str, flag: str, choices: Iterable[str] = ()) -> list:
    """``--flag a,b`` → ['a', 'b'], or UserError naming the first entry not in ``choices``
    (checked before any work starts: a typo is not found after minutes of measuring)."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    choices = tuple(choices)
    bad = [v for v in items if choices and v not in choices]
    if bad or not items:
        raise UserError(f"{flag}: unknown entry {bad[0]!r}; choose from {', '.join(choices)}"
                        if bad else f"{flag}: empty list")
    return items


def parse_sizes(text: str, flag: str = "--sizes") -> list:
    """'320x240,640x480' → [(320, 240), (640, 480)], or UserError."""
    try:
        return [parse_size(s) for s in comma_list(text, flag)]
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"{flag}: {exc}") from None


def add_model_args(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    """``precision``: the default (evaluations pass fp32: their figures must not depend on
    which path a timing probe picked under the machine's load that day)."""
    g = p.add_argument_group("model")
    g.add_argument("--weights", help="GoodPoint weights (.safetensors); default: bundled model")
    g.add_argument("--backend", default="auto",
                   help="auto | torch | onnxruntime | tensorrt (default: auto = fastest available)")
    g.add_argument("--precision", default=precision,
                   help=f"auto | fp32 | bf16 | fp16 | int8 (default {precision}; auto: with --backend "
                        "auto the fastest path that passes the accuracy gate on this machine, "
                        "measured once and cached; with a named backend its reference precision)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    g.add_argument("--threads", type=bounded(int, 1), default=None,
                   help="CPU threads for the network (default: the backend's choice)")


#: GoodPointConfig fields offered as options; flag, help, default and range come from the
#: dataclass field's metadata (core/config.py), the one source of the settings.
CONFIG_OPTIONS = ("keypoint_threshold", "nms_radius", "border", "max_keypoints", "pyramid_levels",
                  "pyramid_factor", "upsample_below",
                  "descriptor_threshold", "ratio_test")


def add_config_options(g, names=CONFIG_OPTIONS, **defaults) -> None:
    """``--threshold``, ``--nms``... generated from :class:`GoodPointConfig`'s field metadata;
    ``defaults`` overrides a field's default (e.g. ``max_keypoints=0``)."""
    for name in names:
        info = field_info(name)
        default = defaults.get(name, info["default"])
        kind = float if isinstance(info["range"][0], float) else int
        shown = "unset" if default is None else f"{default:g}" if kind is float else default
        g.add_argument(info["flag"], dest=name, type=kind, default=default,
                       help=f"{info['help']} (default {shown}; range {info['range'][0]}–"
                            f"{info['range'][1]})")


def add_feature_args(p: argparse.ArgumentParser,
                     max_keypoints: int = field_info("max_keypoints")["default"]) -> None:
    g = p.add_argument_group("keypoints and matching")
    add_config_options(g, max_keypoints=max_keypoints)
    g.add_argument("--resize", type=parse_size, default=None,
                   help="run the network at WxH; keypoints are mapped back to the original pixels")
    budget, white = field_info("memory_budget_mb"), field_info("input_max")
    g.add_argument("--memory-budget", type=float, default=budget["default"], metavar="MB",
                   help="refuse a frame whose network input would take more memory than this "
                        f"(default {budget['default']:g} MB; pass --resize or raise it)")
    g.add_argument("--input-max", type=float, default=white["default"],
                   help="pixel value meaning white (4095: 12-bit camera in a 16-bit file; "
                        f"default {white['default']:g}: the type's full range)")


def config_from_args(args):
    """GoodPointConfig from the options of :func:`add_config_options` (any subset; unset
    θ_keypoint / NMS radius resolve from the weights when the extractor is built)."""
    kw = {name: getattr(args, name) for name in CONFIG_OPTIONS if hasattr(args, name)}
    if "max_keypoints" in kw:
        kw["max_keypoints"] = kw["max_keypoints"] or None
    for name, opt in (("memory_budget_mb", "memory_budget"), ("input_max", "input_max")):
        if hasattr(args, opt):
            kw[name] = getattr(args, opt)
    return GoodPointConfig(**kw).validate()


def extractor_from_args(args):
    kw = {}
    if getattr(args, "threads", None):
        kw["threads"] = args.threads
    return FeatureExtractor(args.backend, config_from_args(args), resize=args.resize,
                            weights=args.weights, device=args.device, precision=args.precision, **kw)


def write_json(path: str, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
