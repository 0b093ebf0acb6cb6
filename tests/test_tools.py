"""The tools: tools/benchmark.py (every section, --quick), tools/gpu_check.py (--quick, on the CPU) and the
analysis, large-image and video benchmarks (--quick)."""

import json

import pytest
from helpers import REPO, python


@pytest.mark.slow
def test_benchmark_quick_runs_every_section(tmp_path):
    proc = python(
        REPO / "tools" / "benchmark.py",
        "--quick",
        "--sections",
        "model",
        "data",
        "metric",
        "eval",
        "train",
        "--json",
        tmp_path / "b.json",
        cwd=tmp_path,
        check=True,
    )
    assert "applies to the full sizes" in proc.stdout  # targets are not judged on toy sizes
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    by_section = {s: [r for r in rows if r["section"] == s] for s in ("model", "data", "metric", "eval", "train")}
    assert all(by_section.values())
    # segkit and smp run the same encoder on the same input: a ratio far from 1 means one side measured
    # something else (another input, a model left on another device, a pass not waited for)
    model = {r["case"]: r for r in by_section["model"]}
    assert all(0.2 < r["ratio"] < 5 for r in model.values()), model
    # a training step (forward, backward) takes longer than the forward pass alone, for both models
    for case, r in model.items():
        if case.endswith(" forward+backward") and "encoder" not in case and "head" not in case:
            forward = model[case.replace("forward+backward", "forward, BN not folded")]
            assert r["segkit_s"] > forward["segkit_s"] and r["peer_s"] > forward["peer_s"], (r, forward)
    assert any("Cityscapes-size PNG" in r["case"] for r in by_section["data"])
    # the metric section compared the two confusion matrices before timing (it exits 1 when they differ)
    evals = {r["case"].split(",")[0]: r for r in by_section["eval"]}
    assert set(evals) == {"single scale", "scale 1.75 only", "6 scales + flip"}
    # 12 passes over 8.7 times the pixels cannot take less than 4 single passes, whatever the noise
    assert evals["6 scales + flip"]["segkit_s"] > 4 * evals["single scale"]["segkit_s"]
    assert [r["variant"] for r in by_section["train"]] == ["fp32", "bf16", "bf16+cl"]
    for r in by_section["train"]:  # inference (forward only, no gradients) outpaces training on the same batches
        assert r["infer_img_s"] > r["train_img_s"], r


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu(tmp_path):
    """tools/gpu_check.py at tiny sizes: timm parity, the stride switch, step benchmarks and short fits pass."""
    proc = python(REPO / "tools" / "gpu_check.py", "--quick", "--json", tmp_path / "g.json", cwd=tmp_path, check=True)
    assert "timm parity xception65 OS8" in proc.stdout and "segkit fit cityscapes.yaml" in proc.stdout
    results = json.loads((tmp_path / "g.json").read_text())
    parity = {k: v for k, v in results.items() if k.startswith("parity")}
    assert len(parity) == 3 and all(v < 1e-4 for v in parity.values())
    for fit in (results["fit"], results["cityscapes_fit"]):
        assert fit["ok"] and 0 <= fit["val_mIoU"] <= 1
    assert results["bench_fp32"]["infer_img_s"] > results["bench_fp32"]["train_img_s"]
    assert results["cityscapes_loader_img_s"] > 0


@pytest.mark.slow
def test_deploy_benchmark_quick_runs_every_runtime(tmp_path):
    """tools/benchmark_deploy.py at 64 px: every runtime at batch 1 and 4, latency and accuracy (the peak memory
    of a runtime needs a process of its own: the full run's)."""
    python(REPO / "tools" / "benchmark_deploy.py", "--quick", "--json", tmp_path / "d.json", cwd=tmp_path, check=True)
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    runtimes = ["pytorch fp32", "onnxruntime fp32", "onnxruntime int8", "onnxruntime int8 dw-float"]
    assert [(r["runtime"], r["batch"]) for r in rows] == [(rt, b) for rt in runtimes for b in (1, 4)]
    for r in rows:
        assert 0 < r["p50_s"] <= r["p95_s"] and r["images_per_s"] == pytest.approx(r["batch"] / r["p50_s"])
        assert r["peak_gib"] is None
        assert 0 <= r["mIoU"] <= 1 and 0 <= r["agreement"] <= 1
    float_rows = [r for r in rows if r["runtime"] in runtimes[:2]]
    assert all(r["agreement"] >= 0.9999 for r in float_rows)  # ONNX Runtime fp32 labels are PyTorch's


@pytest.mark.slow
def test_analysis_benchmark_quick_times_both_loops(tmp_path):
    """tools/benchmark_analysis.py --quick: the plain and the analysis loop over the same 6 images, against this
    checkout as its own baseline."""
    args = ["--quick", "--baseline_src", REPO, "--json", tmp_path / "a.json"]
    python(REPO / "tools" / "benchmark_analysis.py", *args, cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "a.json").read_text())
    assert set(results["rows"]) == {"plain", "analysis", "baseline plain"} and results["images"] == 6
    assert all(row["seconds_per_image"] > 0 for row in results["rows"].values())
    assert results["analysis_over_plain"] > 0 and results["rows"]["analysis"]["plot_seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("geotiff", [False, True])
def test_large_image_benchmark_quick_measures_whole_and_tiled(geotiff, tmp_path):
    """tools/benchmark_large.py --quick: a 300 px image predicted whole and a 600 px one tiled under its 60 MB
    budget, each with its peak memory and time; as PNGs, and as GeoTIFFs read window by window."""
    extra = ["--geotiff"] if geotiff else []
    python(
        REPO / "tools" / "benchmark_large.py",
        "--quick",
        *extra,
        "--json",
        tmp_path / "l.json",
        cwd=tmp_path,
        check=True,
    )
    rows = json.loads((tmp_path / "l.json").read_text())["rows"]
    assert set(rows) == {"baseline", "300", "600"}
    assert rows["300"]["tiled"] is None and "band by band" in rows["600"]["tiled"]
    assert all(row["peak_rss_bytes"] > 10**8 and row["seconds"] > 0 for row in rows.values())


@pytest.mark.slow
def test_video_benchmark_quick_times_video_and_images(tmp_path):
    """tools/benchmark_video.py --quick: the same 12 frames as a video and as images, frames per second of each."""
    python(REPO / "tools" / "benchmark_video.py", "--quick", "--json", tmp_path / "v.json", cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "v.json").read_text())
    assert {mode: row["frames"] for mode, row in results["rows"].items()} == {"images": 12, "video": 12}
    assert results["video_over_images"] > 0


@pytest.mark.slow  # two processes / a tool's quick run: after the default set
def test_bands_benchmark_quick_reads_every_set(tmp_path):
    """tools/benchmark_bands.py --quick: RGB JPEG/PNG and 4-band 16-bit TIFFs through the training dataset."""
    python(REPO / "tools" / "benchmark_bands.py", "--quick", "--json", tmp_path / "b.json", cwd=tmp_path, check=True)
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert set(rows) == {"rgb_jpeg", "rgb_png", "bands_tiff", "bands_tiff_zlib"}
    assert all(
        row["pipeline_img_s"] > 0 and row["decode_img_s"] >= row["pipeline_img_s"] * 0.5 for row in rows.values()
    )
    assert rows["rgb_jpeg"]["pipeline_vs_rgb_jpeg"] == 1.0
