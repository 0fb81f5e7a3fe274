"""Axis alignment: the map is found, baked into the ONNX files, named only where measured, refused otherwise."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from export.align import candidates, fit_slopes
from infogan.effects import factors, measure_effects
from infogan.latent import LatentLayout
from infogan.prior import present, sample, to_trained
from tests.conftest import ROOT, run, write_idx
from tests.test_disentangle import bar

SHIPPED = ROOT / "models" / "mnist"


def mixed_bars(noise: np.ndarray, categorical: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """A stand-in generator whose codes each move width and shear together: the factors lie along the diagonals."""
    width = (continuous[:, 0] + continuous[:, 1]) / 2
    shear = (continuous[:, 0] - continuous[:, 1]) / 2
    return np.stack([bar(round(3 + 2 * w), 0.3 * s) * 2 - 1 for w, s in zip(width, shear)])[:, None]


def test_the_map_turns_mixed_codes_onto_one_factor_each():
    layout = LatentLayout.build(4, [10], 2)
    scale = {"slant": 0.1, "thickness": 0.5}
    before = measure_effects(mixed_bars, layout, scale, draws=8)
    assert max(result["share"] for result in before.values()) < 0.75  # both codes move both factors
    slopes, categorical = fit_slopes(mixed_bars, layout, scale, draws=40, points=12, rng=np.random.default_rng(0))
    best = candidates(slopes, categorical, layout, np.random.default_rng(1))[0]
    assert best.by is None and np.abs(best.matrices[0]).sum(axis=1) == pytest.approx([1, 1])  # each spans [-1, 1]
    aligned = LatentLayout.from_dict({**layout.to_dict(), "alignment": {
        "matrices": best.matrices.tolist(), "trained_bounds": [[-1, 1], [-1, 1]], "by": None}})
    inverse = np.linalg.inv(best.matrices[0])

    def through(noise, categorical, continuous):
        return mixed_bars(noise, categorical, continuous @ inverse.T)

    after = measure_effects(through, aligned, scale, draws=8)
    ends = factors((through(None, None, np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float32)) + 1) / 2)
    assert ends["slant"][1] > ends["slant"][0] and ends["thickness"][3] > ends["thickness"][2]
    assert after["c2"]["factor"] == "slant" and after["c2"]["share"] > 0.9
    assert after["c3"]["factor"] == "thickness" and after["c3"]["share"] > 0.9


def test_prior_draws_of_aligned_codes_stay_on_the_trained_prior():
    card = json.loads((SHIPPED / "model.json").read_text())
    layout = LatentLayout.from_dict(card["latent"])
    assert layout.alignment is not None
    _, categorical, presented = sample(layout, 2000, np.random.default_rng(0))
    trained = to_trained(layout, categorical, presented)
    assert np.abs(trained).max() <= 1 + 1e-5  # every draw inside the square the generator was trained on
    assert trained.min(axis=0) == pytest.approx([-1, -1], abs=0.05) and trained.std(axis=0) == pytest.approx(
        [1 / np.sqrt(3)] * 2, rel=0.05)  # and spread over all of it, uniformly
    assert np.abs(presented).max() <= 1 + 1e-5  # each presented code spans [-1, 1]
    assert present(layout, categorical, trained) == pytest.approx(presented, abs=1e-5)


@pytest.fixture(scope="module")
def generated_digits(tmp_path_factory) -> str:
    """500 digits drawn by the shipped generator in the IDX format: the reference the factors are measured in."""
    directory = tmp_path_factory.mktemp("generated-digits")
    session = ort.InferenceSession(str(SHIPPED / "generator.onnx"), providers=["CPUExecutionProvider"])
    layout = LatentLayout.from_json(session.get_modelmeta().custom_metadata_map["infogan.latent"])
    noise, categorical, continuous = sample(layout, 500, np.random.default_rng(5))
    images = session.run(None, {"noise": noise, "categorical": categorical, "continuous": continuous})[0]
    write_idx(directory / "train-images-idx3-ubyte.gz", np.rint((images[:, 0] + 1) * 127.5).astype(np.uint8))
    write_idx(directory / "train-labels-idx1-ubyte.gz", categorical[:, 0].astype(np.uint8))
    return str(directory)


@pytest.fixture(scope="module")
def realigned(tmp_path_factory, generated_digits):
    """The shipped model aligned again from its trained codes, into a new directory."""
    out = tmp_path_factory.mktemp("realigned") / "mnist"
    result = run("export.align", str(SHIPPED), "--data-dir", generated_digits, "--out", str(out),
                 "--fit-draws", "200", "--eval-draws", "60")
    assert result.returncode == 0, result.stderr
    return out, result


def test_align_cli_bakes_the_map_into_both_files_and_names_the_codes(realigned):
    out, result = realigned
    card = json.loads((out / "model.json").read_text())
    names = [code["name"] for code in card["latent"]["codes"]]
    assert names == ["c1", "slant", "thickness"] and "slant: slant" in result.stdout
    alignment = card["alignment"]
    assert alignment["parity"]["max_abs_diff"]["generator"] <= 1e-4 and set(alignment["candidates"]) >= {
        "one map for all draws"}
    for name in ("slant", "thickness"):
        after = alignment["effects_after"][name]
        assert after["factor"] == name and after["share"] >= 0.8 and after[name] >= 1.0
    assert min(result["share"] for result in alignment["effects_before"].values()) < 0.75
    for file_name in ("generator.onnx", "encoder.onnx"):
        session = ort.InferenceSession(str(out / file_name), providers=["CPUExecutionProvider"])
        layout = LatentLayout.from_json(session.get_modelmeta().custom_metadata_map["infogan.latent"])
        assert [c.name for c in layout.codes] == names and layout.alignment is not None


def test_a_model_whose_codes_move_nothing_is_refused_and_left_alone(model_dir, digits_dir, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(model_dir, copy)
    before = {path.name: path.read_bytes() for path in copy.iterdir()}
    result = run("export.align", str(copy), "--data-dir", str(digits_dir), "--fit-draws", "20", "--eval-draws", "10")
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert "no map separates" in result.stderr or "directions are only" in result.stderr
    assert {path.name: path.read_bytes() for path in copy.iterdir()} == before


def test_align_cli_names_a_missing_model_file(tmp_path, digits_dir):
    result = run("export.align", str(tmp_path), "--data-dir", str(digits_dir))
    assert result.returncode == 2 and f"{tmp_path / 'generator.onnx'}: not found" in result.stderr


def test_named_codes_work_everywhere_and_indexes_still_do(shipped_server):
    import httpx

    with httpx.Client(base_url=shipped_server.url, timeout=30) as http:
        info = http.get("/info").json()
        assert [code["name"] for code in info["codes"]] == ["c1", "slant", "thickness"]
        assert info["alignment"]["by"] == "c1" and "one map per value of c1" in info["alignment"]["method"]
        body = {"codes": {"slant": 0.5, "c1": 3}, "n": 2, "seed": 9}
        images = http.post("/generate", json=body, headers={"Accept": "application/json"}).json()["images"]
        assert all(image["codes"]["slant"] == 0.5 and image["codes"]["c1"] == 3 for image in images)
        by_index = http.get("/traverse", params={"code": 3, "rows": 1, "steps": 2, "seed": 1},
                            headers={"Accept": "application/json"}).json()
        by_name = http.get("/traverse", params={"code": "thickness", "rows": 1, "steps": 2, "seed": 1},
                           headers={"Accept": "application/json"}).json()
        assert by_index == by_name and by_name["code"] == "thickness"
        assert http.post("/generate", json={"codes": {"c2": 1}}).status_code == 422  # the old name is gone
        schema = http.get("/openapi.json").json()
        traverse = next(p for p in schema["paths"]["/traverse"]["get"]["parameters"] if p["name"] == "code")
        assert {"slant", "thickness", "2"} <= set(traverse["schema"]["enum"])
        examples = schema["components"]["schemas"]["GenerateRequest"]["examples"]
        assert any("slant" in (example.get("codes") or {}) for example in examples)
        png = http.post("/generate", json={"label": "7", "seed": 1}).content
        encoded = http.post("/encode", content=png, headers={"Content-Type": "image/png"}).json()
        assert set(encoded["codes"]) == {"c1", "slant", "thickness"} and encoded["label"] == "7"


def test_a_pinned_aligned_code_moves_only_its_own_factor(shipped_server):
    """With the seed fixed, changing slant changes the slant a lot and the thickness little (and vice versa)."""
    import httpx

    def measured(codes: dict) -> np.ndarray:
        with httpx.Client(base_url=shipped_server.url, timeout=30) as http:
            answer = http.post("/generate", json={"codes": codes, "n": 32, "seed": 4},
                               headers={"Accept": "application/json"}).json()
        from service.imaging import decode

        pixels = np.stack([np.asarray(decode(__import__("base64").b64decode(i["png_base64"]), "image/png", 10**6, 64))
                           for i in answer["images"]]).astype(np.float64) / 255
        found = factors(pixels[:, None])
        return np.stack([found["slant"] / 0.225, found["thickness"] / 0.665])  # real digits' SDs (Morpho-MNIST)

    for name, other in (("slant", 1), ("thickness", 0)):
        change = measured({name: 1.0}) - measured({name: -1.0})
        moved = np.abs(change).mean(axis=1)
        assert moved[1 - other] > 3 * moved[other], (name, moved)
        assert change[1 - other].mean() > 0  # a larger code means more of its factor
