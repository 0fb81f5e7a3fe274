"""Turns request codes into generator inputs, deterministically.

The noise and the prior draws of image i come from a random stream seeded by (seed, i) alone: every code
is drawn whether or not the request gives it, so giving or changing one code never moves anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infogan.latent import Code, LatentLayout
from infogan.prior import NumpyDraws, draw_parts, present

CONTINUOUS_LIMIT = 5.0  # the prior is [-1, 1]; the paper extrapolates to +-2; we allow up to +-5


class CodeError(ValueError):
    """A request's code value is unusable; `field` names it for the 422 answer."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Latents:
    noise: np.ndarray  # (B, noise_dim) float32
    categorical: np.ndarray  # (B, n_cat) int64
    continuous: np.ndarray  # (B, n_cont) float32

    def codes(self, layout: LatentLayout, i: int) -> dict[str, int | float]:
        """Every code's value for image i, by name."""
        values = [int(v) for v in self.categorical[i]] + [float(v) for v in self.continuous[i]]
        return {code.name: value for code, value in zip(layout.codes, values)}

    def every(self, start: int, step: int) -> Latents:
        """A view of rows start, start + step, ... (writes go through): one column of a row-major grid."""
        return Latents(self.noise[start::step], self.categorical[start::step], self.continuous[start::step])

    def feeds(self) -> dict[str, np.ndarray]:
        return {"noise": self.noise, "categorical": self.categorical, "continuous": self.continuous}


def parse_number(raw: str, field: str) -> int | float:
    """A query-string number: an int when it reads as one, else a float."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise CodeError(field, f"{field} must be a number, got {raw!r}")


def check_value(code: Code, value: object, field: str) -> int | float:
    """A code value as the model needs it, or a CodeError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodeError(field, f"{code.name} must be a number, got {type(value).__name__}")
    if code.kind == "categorical":
        if isinstance(value, float) and value.is_integer():  # JSON's 3.0 is the integer 3
            value = int(value)
        if not isinstance(value, int):
            raise CodeError(field, f"{code.name} is categorical: expected an integer in [0, {code.size}), got {value}")
        if not 0 <= value < code.size:
            raise CodeError(field, f"{code.name} must be in [0, {code.size}), got {value}")
        return value
    if not math.isfinite(value) or abs(value) > CONTINUOUS_LIMIT:
        raise CodeError(field, f"{code.name} must be a finite number in "
                        f"[{-CONTINUOUS_LIMIT:g}, {CONTINUOUS_LIMIT:g}], got {value}")
    return float(value)


def parse_codes(layout: LatentLayout, codes: list | dict | None, field: str = "codes") -> dict[str, int | float]:
    """Codes given as a list in index order or as {name: value}; returns {name: checked value}."""
    if codes is None:
        return {}
    if isinstance(codes, list):
        if len(codes) != len(layout.codes):
            raise CodeError(field, f"expected {len(layout.codes)} values (one per code: "
                            f"{', '.join(c.name for c in layout.codes)}), got {len(codes)}")
        pairs = list(zip(layout.codes, codes))
    else:
        pairs = []
        for name, value in codes.items():
            try:
                pairs.append((layout.code(name), value))
            except KeyError as error:
                raise CodeError(f"{field}.{name}", str(error.args[0])) from None
    return {code.name: check_value(code, value, f"{field}.{code.name}") for code, value in pairs}


def label_code(layout: LatentLayout, label: str) -> dict[str, int]:
    """{categorical code: value} for a label of the model's label map; CodeError naming `label` otherwise."""
    labelled = next((c for c in layout.categorical if c.labels), None)
    if labelled is None:
        raise CodeError("label", "this model has no label map; give the categorical code's value instead")
    if label not in labelled.labels:
        raise CodeError("label", f"unknown label {label!r}; known: {', '.join(labelled.labels)}")
    return {labelled.name: labelled.labels.index(label)}


def read_encoding(layout: LatentLayout, probabilities: np.ndarray, means: np.ndarray) -> dict:
    """One image's encoder output as codes by name (each categorical code's value and probabilities, each
    continuous code's value) and the label of the first categorical code's value, if the model has a map."""
    codes: dict = {}
    for code, columns in layout.categorical_columns():
        probs = probabilities[columns]
        codes[code.name] = {"value": int(probs.argmax()), "probabilities": [round(float(p), 6) for p in probs]}
    for code, mean in zip(layout.continuous, means):
        codes[code.name] = float(mean) if math.isfinite(mean) else 0.0
    first = layout.categorical[0] if layout.categorical else None
    label = first.labels[codes[first.name]["value"]] if first and first.labels else None
    return {"codes": codes, "label": label}


def draw(layout: LatentLayout, seed: int, indexes: range | list[int], pins: dict[str, int | float] | None = None) -> Latents:
    """Noise and prior draws for images `indexes`, each from its own stream (seed, i), with `pins` applied.

    The stream is np.random.default_rng([seed, i]) built from its parts, which skips default_rng's argument
    checks (half its cost, and this runs per image on the event loop); the numbers are the same. Continuous
    codes are drawn as the model was trained and then mapped to the codes it presents (infogan/prior.py),
    after the categorical pins, since an alignment may depend on the categorical value.
    """
    pins = pins or {}
    noise = np.empty((len(indexes), layout.noise_dim), np.float32)
    categorical = np.empty((len(indexes), len(layout.categorical)), np.int64)
    continuous = np.empty((len(indexes), len(layout.continuous)), np.float32)
    for row, i in enumerate(indexes):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))
        noise[row], categorical[row], continuous[row] = draw_parts(layout, None, NumpyDraws(rng))
    latents = pin(layout, Latents(noise, categorical, continuous),
                  {name: value for name, value in pins.items() if layout.code(name).kind == "categorical"})
    latents.continuous = present(layout, latents.categorical, latents.continuous)
    return pin(layout, latents, {name: value for name, value in pins.items() if layout.code(name).kind == "continuous"})


def pin(layout: LatentLayout, latents: Latents, values: dict[str, int | float]) -> Latents:
    """Overwrites the given codes in every image (in place) and returns the latents."""
    for name, value in values.items():
        code = layout.code(name)
        if code.kind == "categorical":
            latents.categorical[:, layout.categorical.index(code)] = value
        else:
            latents.continuous[:, layout.continuous.index(code)] = value
    return latents


def traversal(layout: LatentLayout, target: Code, values: list, rows: int, seed: int,
              pins: dict[str, int | float]) -> tuple[Latents, Latents]:
    """The latents of a traversal grid, row-major, and of its rows.

    Row r holds image r's draws (as /generate with the same seed) with the pins applied; column j sets the
    traversed code to values[j].
    """
    base = draw(layout, seed, range(rows), pins)
    grid = Latents(*(np.repeat(part, len(values), axis=0) for part in (base.noise, base.categorical, base.continuous)))
    for column, value in enumerate(values):
        pin(layout, grid.every(column, len(values)), {target.name: value})
    return grid, base
