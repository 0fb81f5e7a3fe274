"""Aligns an exported model's continuous codes with the image factors they move, and names them.

    python -m export.align MODEL_DIR --data-dir DIR [--out DIR]

Training without labels learns a space of continuous codes that holds slant and stroke thickness, but not
which axes of it carry them: with a fixed-variance Gaussian Q any rotation of that space scores the same
(docs/RESULTS-9k.md). This step chooses the axes afterwards, by measuring images (infogan/effects.py, with
Morpho-MNIST's measures):

1. fit: for many draws of (noise, categorical code), the generator is run at random points of the trained
   codes' prior and each factor (in real-digit SDs) is fitted as a linear function of the codes;
2. for each factor, the direction of the code space whose sweep moves that factor with the largest share;
   once over all draws (one map) and once per value of the first categorical code (one map per digit);
3. both candidates are measured on fresh draws, exactly as the model card measures codes; the better lower
   share wins (one map on a tie); a code is named after its factor only where the measurement supports it
   (share >= 0.8 and an effect >= 1 SD), and nothing is written unless every factor gets its own code;
4. the map is baked into the ONNX files: generator.onnx takes the aligned codes (and maps them back to the
   trained ones inside), encoder.onnx returns aligned codes; the layout in their metadata and model.json
   record the matrices, how they were chosen and the effects before and after. Draws from the prior take
   the trained codes from their own prior and map them (infogan/prior.py), so images stay on the training
   distribution.

Running it again on an aligned model starts over from the trained codes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from infogan.effects import FACTORS, GOAL_SHARE, MIN_EFFECT, Generate, factors, measure_effects, reference_scale, separated
from infogan.files import sha256
from infogan.identity import CLASSIFIER, DRAWS, GOAL, STEPS, DigitClassifier, identity_kept, supported_range
from infogan.latent import Alignment, Code, LatentLayout
from infogan.prior import present, sample, to_trained
from training.data import DataError, load_dataset

PREFIX = "align/"  # names of every node and weight this step adds, so a later run can take them out again
FIT_DRAWS, FIT_POINTS, EVAL_DRAWS = 600, 24, 200
MIN_ANGLE_DEG = 30  # factor directions closer than this make an ill-conditioned map: refuse instead
TOLERANCE = 1e-4  # aligned files against the trained ones, float32


class AlignError(Exception):
    """The model cannot be aligned, or no map separates its factors."""


@dataclass
class Candidate:
    """A map to try: its matrices (presented = matrices[v] @ trained) and what it measured on fresh draws."""

    label: str
    by: str | None
    matrices: np.ndarray  # (values, k, k)
    effects: dict | None = None

    @property
    def score(self) -> float:
        """The lower share of the codes that should carry the factors (the first len(FACTORS))."""
        return min(self.effects[name]["share"] for name in list(self.effects)[: len(FACTORS)])


# --- the ONNX files ---------------------------------------------------------------------------------------

def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def strip_alignment(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The graph as export wrote it: the nodes and weights of an earlier alignment taken out."""
    graph = model.graph
    inside = PREFIX + tensor
    kept = [node for node in graph.node if not node.name.startswith(PREFIX)]
    for node in kept:
        node.input[:] = [tensor if name == inside else name for name in node.input]
        node.output[:] = [tensor if name == inside else name for name in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    weights = [weight for weight in graph.initializer if not weight.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    return model


def map_nodes(source: str, target: str, matrices: np.ndarray, which: str | None) -> tuple[list, list]:
    """Nodes computing target[b] = matrices[which[b]] @ source[b] (or the single matrix when which is None)."""
    def node(op: str, inputs: list[str], output: str, **attributes) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=PREFIX + output, **attributes)

    if which is None:
        weights = [numpy_helper.from_array(matrices[0].T.astype(np.float32), PREFIX + "matrix_t")]
        return [node("MatMul", [source, PREFIX + "matrix_t"], target)], weights
    weights = [numpy_helper.from_array(matrices.astype(np.float32), PREFIX + "matrices"),
               numpy_helper.from_array(np.array([2], np.int64), PREFIX + "axis2")]
    nodes = [node("Gather", [PREFIX + "matrices", which], PREFIX + "chosen", axis=0),
             node("Unsqueeze", [source, PREFIX + "axis2"], PREFIX + "column"),
             node("MatMul", [PREFIX + "chosen", PREFIX + "column"], PREFIX + "product"),
             node("Squeeze", [PREFIX + "product", PREFIX + "axis2"], target)]
    return nodes, weights


def bake_generator(model: onnx.ModelProto, inverses: np.ndarray, by_column: int | None) -> onnx.ModelProto:
    """generator.onnx taking presented codes as `continuous`, mapped to the trained ones before the network."""
    graph = model.graph
    inside = PREFIX + "continuous"
    for existing in graph.node:
        existing.input[:] = [inside if name == "continuous" else name for name in existing.input]
    nodes, weights = [], []
    which = None
    if by_column is not None:
        which = PREFIX + "which"
        weights.append(numpy_helper.from_array(np.array(by_column, np.int64), PREFIX + "by_column"))
        nodes.append(helper.make_node("Gather", ["categorical", PREFIX + "by_column"], [which], name=which, axis=1))
    mapping, mapping_weights = map_nodes("continuous", inside, inverses, which)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + mapping + rest)
    graph.initializer.extend(weights + mapping_weights)
    return model


def bake_encoder(model: onnx.ModelProto, matrices: np.ndarray, by_slice: tuple[int, int] | None) -> onnx.ModelProto:
    """encoder.onnx returning presented codes: the trained means mapped by the matrix of Q's most likely value."""
    graph = model.graph
    inside = PREFIX + "continuous_mean"
    for existing in graph.node:
        existing.output[:] = [inside if name == "continuous_mean" else name for name in existing.output]
    nodes, weights = [], []
    which = None
    if by_slice is not None:
        which = PREFIX + "which"
        start, stop = by_slice
        weights += [numpy_helper.from_array(np.array([start], np.int64), PREFIX + "start"),
                    numpy_helper.from_array(np.array([stop], np.int64), PREFIX + "stop"),
                    numpy_helper.from_array(np.array([1], np.int64), PREFIX + "axis1")]
        nodes += [helper.make_node("Slice", ["categorical_probs", PREFIX + "start", PREFIX + "stop", PREFIX + "axis1"],
                                   [PREFIX + "probs"], name=PREFIX + "probs"),
                  helper.make_node("ArgMax", [PREFIX + "probs"], [which], name=which, axis=1, keepdims=0)]
    mapping, mapping_weights = map_nodes(inside, "continuous_mean", matrices, which)
    graph.node.extend(nodes + mapping)
    graph.initializer.extend(weights + mapping_weights)
    return model


def set_layout(model: onnx.ModelProto, layout: LatentLayout) -> onnx.ModelProto:
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    metadata["infogan.latent"] = layout.to_json()
    del model.metadata_props[:]
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


# --- choosing the axes ------------------------------------------------------------------------------------

def trained_layout(layout: LatentLayout) -> LatentLayout:
    """The layout the generator was trained with: an earlier alignment's codes back to c2, c3, ... on their prior."""
    if layout.alignment is None:
        return layout
    first = len(layout.categorical)
    continuous = tuple(Code(f"c{first + i + 1}", "continuous", low=low, high=high)
                       for i, (low, high) in enumerate(layout.alignment.trained_bounds))
    return LatentLayout(layout.noise_dim, (*layout.categorical, *continuous), layout.noise)


def measure(images: np.ndarray, scale: dict[str, float]) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, factors) in real-digit SDs."""
    measured = factors((images.astype(np.float64) + 1.0) / 2.0)
    return np.stack([measured[name] / scale[name] for name in FACTORS], axis=-1)


def fit_slopes(generate, layout: LatentLayout, scale: dict[str, float], draws: int, points: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per draw of (noise, categorical), the factors' slopes in the trained codes: (draws, factors, k), and the
    draws' categorical values."""
    noise, categorical, _ = sample(layout, draws, rng)
    k = len(layout.continuous)
    codes = np.stack([rng.uniform(c.low, c.high, (draws, points)) for c in layout.continuous], axis=-1)
    images = generate(noise.repeat(points, axis=0), categorical.repeat(points, axis=0),
                      codes.reshape(-1, k).astype(np.float32))
    responses = measure(images, scale).reshape(draws, points, len(FACTORS))
    design = np.concatenate([codes, np.ones((draws, points, 1))], axis=-1)
    slopes = np.stack([np.linalg.lstsq(design[d], responses[d], rcond=None)[0][:k].T for d in range(draws)])
    return slopes, categorical


def candidate_directions(k: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors (k, n) to search: every quarter degree of a half circle for two codes, random otherwise."""
    if k == 2:
        angles = np.deg2rad(np.arange(0, 180, 0.25))
        return np.stack([np.cos(angles), np.sin(angles)])
    directions = rng.standard_normal((k, 50_000))
    return directions / np.linalg.norm(directions, axis=0)


def best_matrix(slopes: np.ndarray, bounds: list[tuple[float, float]], directions: np.ndarray) -> np.ndarray:
    """presented = matrix @ trained: row f sweeps the direction where factor f has the largest share of the
    effect, signed so the factor grows with the code; further codes span the rest, orthogonally; each row scaled
    so its code spans [-1, 1] over the prior."""
    effects = np.abs(np.einsum("dfk,kn->dfn", slopes, directions)).mean(axis=0)  # (factors, directions)
    shares = effects / np.maximum(effects.sum(axis=0), 1e-12)
    chosen = [directions[:, shares[f].argmax()] for f in range(len(FACTORS))]
    # Signed so that a larger code means more of its factor (thicker strokes, a larger slant measure).
    chosen = [u if (slopes[:, f] @ u).mean() >= 0 else -u for f, u in enumerate(chosen)]
    cosine = abs(float(chosen[0] @ chosen[1]))
    if cosine > np.cos(np.deg2rad(MIN_ANGLE_DEG)):
        raise AlignError(f"the best {FACTORS[0]} and {FACTORS[1]} directions are only "
                         f"{np.rad2deg(np.arccos(cosine)):.0f} degrees apart: no map separates them")
    k = slopes.shape[2]
    basis = np.stack(chosen, axis=1)
    if k > len(chosen):  # the rest of the space, orthogonal to the factor directions
        complement = np.linalg.svd(basis.T)[2][len(chosen):].T
        basis = np.concatenate([basis, complement], axis=1)
    matrix = np.linalg.inv(basis)
    half_widths = np.array([(high - low) / 2 for low, high in bounds])
    return matrix / (np.abs(matrix) @ half_widths)[:, None]


def candidates(slopes: np.ndarray, categorical: np.ndarray, layout: LatentLayout, rng: np.random.Generator) -> list:
    bounds = [(c.low, c.high) for c in layout.continuous]
    directions = candidate_directions(slopes.shape[2], rng)
    found = [Candidate("one map for all draws", None, best_matrix(slopes, bounds, directions)[None])]
    if layout.categorical:
        by = layout.categorical[0]
        try:
            per_value = [best_matrix(slopes[categorical[:, 0] == v], bounds, directions) for v in range(by.size)]
            found.append(Candidate(f"one map per value of {by.name}", by.name, np.stack(per_value)))
        except AlignError:  # a value whose directions coincide: only the single map remains a candidate
            pass
    return found


def aligned_layout(layout: LatentLayout, candidate: Candidate, names: list[str], method: str) -> LatentLayout:
    continuous = tuple(Code(name, "continuous") for name in names)
    alignment = Alignment(matrices=tuple(tuple(tuple(float(x) for x in row) for row in m) for m in candidate.matrices),
                          trained_bounds=tuple((c.low, c.high) for c in layout.continuous), by=candidate.by,
                          method=method)
    return LatentLayout(layout.noise_dim, (*layout.categorical, *continuous), layout.noise, alignment)


def names_from(effects: dict[str, dict], layout: LatentLayout) -> list[str]:
    """A factor's name for each code that moves that factor (share >= GOAL_SHARE, effect >= MIN_EFFECT), else cN."""
    first = len(layout.categorical)
    names = []
    for i, result in enumerate(effects.values()):
        supported = result["factor"] is not None and result["share"] >= GOAL_SHARE and i < len(FACTORS) \
            and result["factor"] == FACTORS[i]
        names.append(FACTORS[i] if supported else f"c{first + i + 1}")
    return names


def batched(generator: ort.InferenceSession, batch: int = 256) -> Generate:
    """The generator session as a function of numpy latents, run in batches."""
    def generate(noise: np.ndarray, categorical: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        return np.concatenate([generator.run(None, {"noise": noise[i : i + batch], "categorical": categorical[i : i + batch],
                                                    "continuous": continuous[i : i + batch]})[0]
                               for i in range(0, len(noise), batch)])
    return generate


def read_model(model_dir: Path) -> tuple[dict, onnx.ModelProto, onnx.ModelProto, LatentLayout]:
    """model.json and both files with any earlier alignment taken out, and the trained layout; AlignError for a
    directory the aligner cannot work on."""
    for name in ("generator.onnx", "encoder.onnx", "model.json"):
        if not (model_dir / name).is_file():
            raise AlignError(f"{model_dir / name}: not found (is {model_dir} a model directory written by python -m export?)")
    card = json.loads((model_dir / "model.json").read_text())
    generator = strip_alignment(onnx.load(str(model_dir / "generator.onnx")), "continuous")
    encoder = strip_alignment(onnx.load(str(model_dir / "encoder.onnx")), "continuous_mean")
    layout = trained_layout(LatentLayout.from_dict(card["latent"]))
    if len(layout.continuous) < len(FACTORS):
        raise AlignError(f"{model_dir}: {len(layout.continuous)} continuous code(s); aligning needs at least "
                         f"{len(FACTORS)}, one per factor ({', '.join(FACTORS)})")
    if any(c.low != -c.high for c in layout.continuous):
        raise AlignError(f"{model_dir}: the continuous codes' prior must be symmetric around 0")
    return card, generator, encoder, layout


def real_scale(card: dict, data_dir: Path) -> dict[str, float]:
    """The factors' spread over the model's own data set: the unit of every effect."""
    image = card["image"]
    try:
        dataset = load_dataset(card["dataset"], data_dir, image["channels"], image["height"])
    except DataError as error:
        raise AlignError(str(error)) from None
    return reference_scale(dataset.images)


def align_model(model_dir: Path, data_dir: Path, out_dir: Path, seed: int = 0, fit_draws: int = FIT_DRAWS,
                eval_draws: int = EVAL_DRAWS, command: str = "", progress=print) -> dict:
    """Aligns model_dir's codes and writes the aligned model to out_dir (may be model_dir); returns the card."""
    card, generator, encoder, layout = read_model(model_dir)
    scale = real_scale(card, data_dir)
    trained = session(generator)
    generate_trained = batched(trained)

    def generate_through(candidate_layout: LatentLayout) -> Generate:
        return lambda noise, categorical, continuous: generate_trained(
            noise, categorical, to_trained(candidate_layout, categorical, continuous))

    rng = np.random.default_rng([seed, 1])
    progress(f"fitting: {fit_draws} draws x {FIT_POINTS} points of the trained codes")
    slopes, categorical = fit_slopes(generate_trained, layout, scale, fit_draws, FIT_POINTS, rng)
    eval_seed = seed + 1  # fresh draws: the fit's own draws would flatter the maps chosen on them
    before = measure_effects(generate_trained, layout, scale, eval_draws, seed=eval_seed)
    found = candidates(slopes, categorical, layout, rng)
    for candidate in found:
        provisional = aligned_layout(layout, candidate, [c.name for c in layout.continuous], candidate.label)
        candidate.effects = measure_effects(generate_through(provisional), provisional, scale, eval_draws, seed=eval_seed)
        shares = ", ".join(f"{FACTORS[i]} {r['share']:.3f}" for i, r in enumerate(list(candidate.effects.values())[:2]))
        progress(f"{candidate.label}: shares on {eval_draws} fresh draws: {shares}")
    best = max(found, key=lambda c: c.score)  # max keeps the first (one map) on a tie
    names = names_from(best.effects, layout)
    after = dict(zip(names, best.effects.values()))
    if not separated(after):
        raise AlignError("no map separates the factors: the best measured "
                         + ", ".join(f"{FACTORS[i]} share {r['share']:.2f} ({r[FACTORS[i]]:.2f} SD)"
                                     for i, r in enumerate(list(best.effects.values())[:2]))
                         + f" (each needs share >= {GOAL_SHARE} and >= {MIN_EFFECT:g} SD); nothing written")
    method = (f"{best.label}: per factor, the direction of the trained codes whose sweep has the largest share of "
              f"that factor (fitted on {fit_draws} draws), chosen over the other candidates by the lower share on "
              f"{eval_draws} fresh draws")
    aligned = aligned_layout(layout, best, names, method)

    reference_encoder = session(encoder)  # before baking, which edits the file's graph in place
    baked_generator, baked_encoder = bake(generator, encoder, best, layout, aligned)
    parity = verify(session(baked_generator), trained, session(baked_encoder), reference_encoder, aligned, seed)

    card["latent"] = aligned.to_dict()
    card["alignment"] = {
        "learned_without_labels": "the space of the continuous codes, which holds the factors",
        "chosen_after_training": "its axes: the map below, chosen by measuring images (Morpho-MNIST's slant and stroke "
                                 "thickness, infogan/effects.py) against the real digits of the data set named here",
        "prior": "the trained codes are drawn from their uniform prior and mapped, so every draw stays on the "
                 "training distribution; each presented code spans [-1, 1] over it, and pinning one moves the image "
                 "along that code's axis only",
        "method": method, "by": best.by, "data": str(data_dir), "seed": seed,
        "fit": {"draws": fit_draws, "points": FIT_POINTS}, "evaluated": {"draws": eval_draws, "seed": eval_seed},
        "candidates": {c.label: {"lower_share": c.score, "effects": c.effects} for c in found},
        "effects_before": before, "effects_after": after, "parity": parity, "command": command,
    }
    card["code_effects"] = {"measured_on": str(data_dir), "draws": eval_draws, "seed": eval_seed,
                            "method": "infogan/effects.py (Morpho-MNIST slant and thickness)", "codes": after}
    card.update(identity_fields(generate_through(aligned), aligned, card["dataset"], eval_seed, progress))
    write(out_dir, {"generator.onnx": baked_generator, "encoder.onnx": baked_encoder}, card, model_dir)
    return card


def bake(generator: onnx.ModelProto, encoder: onnx.ModelProto, best: Candidate, layout: LatentLayout,
         aligned: LatentLayout) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Both files with the map inside: the generator maps aligned codes back to trained ones, the encoder maps its
    readings forward; by value of a categorical code when the map is one per value."""
    inverses = np.linalg.inv(np.asarray(best.matrices, np.float64))
    by_column = layout.categorical.index(layout.code(best.by)) if best.by else None
    by_slice = None
    if best.by:
        start = sum(c.size for c in layout.categorical[:by_column])
        by_slice = (start, start + layout.code(best.by).size)
    return (set_layout(bake_generator(generator, inverses, by_column), aligned),
            set_layout(bake_encoder(encoder, best.matrices, by_slice), aligned))


def identity_fields(generate, layout: LatentLayout, dataset: str, seed: int, progress) -> dict:
    """For MNIST models, where the digit classifier applies: how far each code keeps the digit (infogan/identity.py)
    and the traversal range the service then offers by default; nothing for other data or without the classifier."""
    if dataset != "mnist" or not CLASSIFIER.is_file():
        return {}
    classifier = DigitClassifier(CLASSIFIER)
    kept = identity_kept(generate, layout, classifier, seed=seed)
    span = supported_range(kept)
    progress(f"digit kept along the sweeps: {json.dumps(kept)}; default traversal range {span}")
    return {"identity": {"method": "infogan/identity.py", "classifier": classifier.metadata, "draws": DRAWS,
                         "steps": STEPS, "seed": seed, "goal": GOAL, "codes": kept},
            "traverse_range": span}


def verify(generator: ort.InferenceSession, trained: ort.InferenceSession, encoder: ort.InferenceSession,
           trained_encoder: ort.InferenceSession, layout: LatentLayout, seed: int) -> dict:
    """The baked files against the trained ones with the map applied in numpy (max abs difference)."""
    noise, categorical, continuous = sample(layout, 64, np.random.default_rng([seed, 2]))
    continuous = continuous * 2  # past the prior too, as the service allows
    back = to_trained(layout, categorical, continuous)
    images = generator.run(None, {"noise": noise, "categorical": categorical, "continuous": continuous})[0]
    expected = trained.run(None, {"noise": noise, "categorical": categorical, "continuous": back})[0]
    probabilities, means = encoder.run(None, {"images": images})
    trained_probabilities, trained_means = trained_encoder.run(None, {"images": images})
    predicted = np.zeros((len(images), len(layout.categorical)), np.int64)
    for column, (_, columns) in enumerate(layout.categorical_columns()):
        predicted[:, column] = trained_probabilities[:, columns].argmax(axis=1)
    worst = {"generator": float(np.abs(images - expected).max()),
             "encoder": float(max(np.abs(probabilities - trained_probabilities).max(),
                                  np.abs(means - present(layout, predicted, trained_means)).max()))}
    for name, difference in worst.items():
        if not difference <= TOLERANCE:
            raise AlignError(f"the aligned {name} differs from the trained one by {difference:.1e} > {TOLERANCE:.0e}")
    return {"max_abs_diff": worst, "tolerance": TOLERANCE}


def write(out_dir: Path, models: dict[str, onnx.ModelProto], card: dict, source: Path) -> None:
    """Writes the files into a staging directory beside out_dir, then moves them in, the card last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".align-"))
    try:
        for name, model in models.items():
            onnx.save(model, str(staging / name))
            card["files"][name] = {**card["files"].get(name, {}), "sha256": sha256(staging / name),
                                   "bytes": (staging / name).stat().st_size}
        (staging / "model.json").write_text(json.dumps(card, indent=2) + "\n")
        for extra in source.iterdir():  # anything else the model directory holds (e.g. README) comes along
            if extra.is_file() and extra.name not in (*models, "model.json") and out_dir.resolve() != source.resolve():
                shutil.copy2(extra, out_dir / extra.name)
        for name in (*models, "model.json"):
            (staging / name).replace(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.align", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="model directory written by python -m export")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="the real images of the model's data set: each factor is measured in their SDs")
    parser.add_argument("--out", type=Path, help="where to write the aligned model (default: MODEL_DIR, in place)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fitting and evaluation draws (default 0)")
    parser.add_argument("--fit-draws", type=int, default=FIT_DRAWS, help=f"draws to fit on (default {FIT_DRAWS})")
    parser.add_argument("--eval-draws", type=int, default=EVAL_DRAWS,
                        help=f"fresh draws the candidates are measured on (default {EVAL_DRAWS})")
    args = parser.parse_args(argv)
    for flag in ("fit_draws", "eval_draws"):
        if getattr(args, flag) < 10:
            parser.error(f"--{flag.replace('_', '-')} must be at least 10")
    command = "python -m export.align " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        card = align_model(args.model_dir, args.data_dir, args.out or args.model_dir, args.seed, args.fit_draws,
                           args.eval_draws, command, progress=lambda line: print(line, file=sys.stderr))
    except AlignError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    alignment = card["alignment"]
    print(f"aligned {args.out or args.model_dir}: {alignment['method'].split(':')[0]}")
    for name, result in alignment["effects_after"].items():
        print(f"  {name}: slant {result['slant']:.2f} SD, thickness {result['thickness']:.2f} SD, share {result['share']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
