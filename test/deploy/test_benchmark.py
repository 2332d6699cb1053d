"""`goodpoint bench` internals: the reference, the per-path report, peak RSS, the plot.

Real backends at a tiny size and 2 frames: the report's structure and its
internal consistency are checked, never a latency."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from goodpoint_ros.deploy import benchmark  # noqa: E402

SIZE = (64, 48)


@pytest.fixture(scope="module")
def result():
    return benchmark.run_benchmark(backends=("torch", "onnxruntime"), precisions=("fp32", "bf16"),
                                   sizes=(SIZE, (80, 64)), frames=2, warmup=1, opencv=False,
                                   progress=False)


def test_reference_first_and_ratios_against_it(result):
    runs = [r for r in result["runs"] if (r["width"], r["height"]) == SIZE]
    assert (runs[0]["backend"], runs[0]["precision"]) == benchmark.REFERENCE
    ok = [r for r in runs if "error" not in r]
    assert {(r["backend"], r["precision"]) for r in ok} == {
        benchmark.REFERENCE, ("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32")}
    ref = runs[0]["total_ms"]["median"]
    for r in ok:
        assert r["reference"] == "reference/fp32"
        assert r["ratio_to_reference"] == pytest.approx(r["total_ms"]["median"] / ref)
        assert r["speedup_vs_reference"] == pytest.approx(1 / r["ratio_to_reference"])
    assert runs[0]["ratio_to_reference"] == 1.0


def test_every_path_has_the_stage_split_gate_and_memory(result):
    for r in (r for r in result["runs"] if "error" not in r):
        assert set(r["stages_ms"]) == {"preprocess", "network", "postprocess", "matching", "total"}
        assert all(v >= 0 for v in r["stages_ms"].values())
        assert 0 <= r["postprocess_share"] <= 1
        assert r["peak_rss_mb"] > 50                      # a loaded network and torch at least
        g = r["gate"]
        assert isinstance(g["passed"], bool) and 0 <= g["repeatability"] <= 1
        if r["backend"] == "torch" and r["precision"] == "fp32":
            assert g["passed"] and g["repeatability"] == 1.0    # same network, same arithmetic
    bad = [r for r in result["runs"] if "error" in r]
    assert {(r["backend"], r["precision"]) for r in bad} == {("onnxruntime", "bf16")}
    assert "bf16" in bad[0]["error"]


def test_machine_block_names_this_cpu(result):
    m = result["machine"]
    cpuinfo = open("/proc/cpuinfo").read()
    assert m["cpu_model"] in cpuinfo and m["cpus"] >= 1
    for flag in m["cpu_flags"].split():
        assert f" {flag}" in cpuinfo
    assert "torch" in m["libraries"] and "onnxruntime" in m["libraries"]
    text = benchmark.format_table(result)
    assert m["cpu_model"] in text and "ratio" in text and "unavailable" in text
    json.dumps(result)                                     # --json writes it as is


def test_plot_is_written_atomically_as_a_png(result, tmp_path):
    out = benchmark.plot_latency(result, tmp_path / "latency.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["latency.png"]


def test_peak_rss_is_per_run_after_a_reset():
    if not benchmark._reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    base = benchmark._peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)                      # 300 MB, touched
    assert benchmark._peak_rss_mb() > base + 250
    del block
    assert benchmark._reset_peak_rss()
    assert benchmark._peak_rss_mb() < base + 100


def test_the_weights_detection_defaults_are_timed_beside_one_plain_level():
    # a 160x120 frame: the bundled weights double it (upsample_below) and run their pyramid;
    # the plain row runs the frame once, as it is
    from goodpoint_ros.core.config import GoodPointConfig
    from goodpoint_ros.core.pipeline import FeatureExtractor, pyramid_size
    r = benchmark.run_benchmark(backends=("onnxruntime",), precisions=("fp32",),
                                sizes=((160, 120),), frames=1, warmup=0, opencv=False,
                                gate=False, progress=False, detections=("network", "defaults"))
    rows = {(x["backend"], x["detection"]): x for x in r["runs"] if "error" not in x}
    plain, full = rows[("onnxruntime", "network")], rows[("onnxruntime", "defaults")]
    assert plain["network_inputs"] == [[160, 120]]
    cfg = FeatureExtractor("onnxruntime", None, precision="fp32").config
    assert cfg.upsample_below > 160 and cfg.pyramid_levels > 1       # the bundled defaults
    want = [(320, 240)] + [pyramid_size((320, 240), f) for f in cfg.scales[1:]]
    assert full["network_inputs"] == [list(s) for s in want if s is not None]
    assert full["gflop"] > 4 * plain["gflop"]                         # doubled, then a pyramid
    assert full["defaults_cost"] == pytest.approx(full["total_ms"]["median"]
                                                  / plain["total_ms"]["median"])
    assert "defaults_cost" not in plain
    # each detection has its own reference rows and ratios
    assert full["reference"] == plain["reference"] == "reference/fp32"
    assert "x " in benchmark.format_table(r) and "160x120*" in benchmark.format_table(r)
    with pytest.raises(ValueError, match="detection"):
        benchmark.bench_path(None, (64, 48), 1, 0, detection="all")
    assert GoodPointConfig().upsample_below is None                   # nothing forced globally
