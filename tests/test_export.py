import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from infogan.latent import LatentLayout
from tests.conftest import run
from training.checkpoint import load_checkpoint, load_networks


def test_export_writes_verified_self_describing_files(model_dir, trained_run):
    card = json.loads((model_dir / "model.json").read_text())
    assert sorted(p.name for p in model_dir.iterdir()) == ["encoder.onnx", "generator.onnx", "model.json"]
    for name in ("generator.onnx", "encoder.onnx"):
        assert card["files"][name]["sha256"] == hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
        assert "BatchNormalization" not in card["files"][name]["optimisation"]["ops_optimised"]
    parity = card["export"]["parity"]
    assert parity["batches"] == [1, 7, 64] and max(parity["max_abs_diff"].values()) <= 1e-4
    state = load_checkpoint(trained_run / "checkpoint.pt")
    assert LatentLayout.from_dict(card["latent"]) == state["layout"]
    assert card["image"] == {"channels": 1, "height": 28, "width": 28, "layout": "NCHW", "dtype": "float32",
                             "value_range": [-1.0, 1.0], "framing": "mnist"}  # the tiny preset's data: MNIST
    assert card["training"]["config"]["preset"] == "tiny" and card["training"]["commands"][0].startswith("python -m training")


def test_metadata_alone_describes_the_model(model_dir, trained_run):
    layout = load_checkpoint(trained_run / "checkpoint.pt")["layout"]
    for name in ("generator.onnx", "encoder.onnx"):
        meta = {p.key: p.value for p in onnx.load(str(model_dir / name)).metadata_props}
        assert LatentLayout.from_json(meta["infogan.latent"]) == layout
        assert layout.code("c1").labels and json.loads(meta["infogan.image"])["channels"] == 1


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_dynamic_batch_matches_pytorch(model_dir, trained_run, batch):
    generator, discriminator = load_networks(load_checkpoint(trained_run / "checkpoint.pt"))
    rng = np.random.default_rng(batch)
    noise = rng.standard_normal((batch, generator.layout.noise_dim)).astype(np.float32)
    categorical = rng.integers(0, 10, (batch, 1))
    continuous = rng.uniform(-2, 2, (batch, 2)).astype(np.float32)
    session = ort.InferenceSession(str(model_dir / "generator.onnx"), providers=["CPUExecutionProvider"])
    (images,) = session.run(None, {"noise": noise, "categorical": categorical, "continuous": continuous})
    with torch.no_grad():
        expected = generator(torch.from_numpy(noise), torch.from_numpy(categorical), torch.from_numpy(continuous))
        _, logits, mean, _ = discriminator(expected)
    assert images.shape == (batch, 1, 28, 28) and np.abs(images - expected.numpy()).max() <= 1e-4
    encoder = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    probabilities, means = encoder.run(None, {"images": images})
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.abs(probabilities - logits.softmax(1).numpy()).max() <= 1e-4
    assert np.abs(means - mean.numpy()).max() <= 1e-4


def test_fp16_storage_is_smaller_and_within_tolerance(tmp_path, trained_run, model_dir):
    out = tmp_path / "fp16"
    result = run("export", str(trained_run), "--out", str(out), "--precision", "fp16")
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["export"]["precision"] == "fp16" and max(card["export"]["parity"]["max_abs_diff"].values()) <= 1e-2
    assert (out / "generator.onnx").stat().st_size < 0.6 * (model_dir / "generator.onnx").stat().st_size
    weights = onnx.load(str(out / "generator.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)


def assert_fails_cleanly(result, message, out):
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith("keep")]


def test_error_cases_leave_nothing_behind(tmp_path, trained_run):
    out = tmp_path / "out"
    assert_fails_cleanly(run("export", str(tmp_path / "missing"), "--out", str(out)), "run directory not found", out)
    assert_fails_cleanly(run("export", str(trained_run), "--out", str(out), "--precision", "int3"),
                         "unknown precision 'int3'", out)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"definitely not a checkpoint")
    assert_fails_cleanly(run("export", str(corrupt), "--out", str(out)), "not a readable checkpoint", out)
    state = torch.load(trained_run / "checkpoint.pt", weights_only=False)
    state["config"]["width"] = 4  # weights no longer fit the network the config describes
    torch.save(state, corrupt / "checkpoint.pt")
    assert_fails_cleanly(run("export", str(corrupt), "--out", str(out)), "incompatible checkpoint", out)


def test_failed_parity_leaves_no_files(tmp_path, trained_run, monkeypatch):
    from export import export as exporter

    monkeypatch.setitem(exporter.TOLERANCE, "fp16", 0.0)  # fp16 weights can never be bit-exact
    out = tmp_path / "out"
    with pytest.raises(exporter.ExportError, match="parity failed: generator differs"):
        exporter.export_run(trained_run, out, precision="fp16")
    assert list(out.iterdir()) == []
