"""The latent layout: the one definition of InfoGAN's noise and codes.

Pure Python (no torch, no numpy) so the service can read it from ONNX metadata
without the training stack. Training, checkpoints, the exported ONNX files and
the service all use this class; nothing else describes the codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

CodeKind = Literal["categorical", "continuous"]


@dataclass(frozen=True)
class Code:
    """One latent code c_i. Categorical codes have `size` values; continuous codes a uniform prior."""

    name: str
    kind: CodeKind
    size: int = 1  # number of categories; 1 for a continuous code
    low: float = -1.0  # uniform prior of a continuous code
    high: float = 1.0
    labels: list[str] | None = None  # class name of each categorical value, set after training

    def __post_init__(self) -> None:
        if not self.name.isidentifier():  # names appear in query strings and JSON keys; "2" would read as an index
            raise ValueError(f"code name must be an identifier such as c2 or slant, got {self.name!r}")
        if self.kind not in ("categorical", "continuous"):
            raise ValueError(f"code {self.name}: kind must be categorical or continuous, got {self.kind!r}")
        if self.kind == "categorical" and self.size < 2:
            raise ValueError(f"code {self.name}: a categorical code needs size >= 2")
        if self.kind == "continuous" and not self.low < self.high:
            raise ValueError(f"code {self.name}: prior needs low < high")
        if self.labels is not None and len(self.labels) != self.size:
            raise ValueError(f"code {self.name}: {len(self.labels)} labels for {self.size} values")

    @property
    def entropy(self) -> float:
        """H(c) in nats: the upper bound of the mutual information this code can carry."""
        if self.kind == "categorical":
            return math.log(self.size)
        return math.log(self.high - self.low)  # differential entropy of the uniform prior


@dataclass(frozen=True)
class Alignment:
    """The continuous codes a model presents, as linear maps of the codes it was trained with.

    Training learns a plane (or space) of continuous codes that holds the image factors, but not which axes
    of it carry them: any rotation scores the same. An alignment, chosen after training by measuring images
    (export/align.py), turns that space so each presented code moves one factor:
    presented = matrices[v] @ trained, where v is the value of the categorical code `by` (one matrix per value),
    or the only matrix when `by` is None. Prior draws stay on the training distribution: the trained codes
    are drawn from their own uniform prior `trained_bounds` and then mapped, never the presented ones
    independently. Rows are scaled so each presented code spans exactly [-1, 1] over that prior.
    """

    matrices: tuple[tuple[tuple[float, ...], ...], ...]
    trained_bounds: tuple[tuple[float, float], ...]
    by: str | None = None
    method: str = ""  # how the matrices were chosen, in words, for whoever reads the layout

    def __post_init__(self) -> None:
        size = len(self.trained_bounds)
        if not self.matrices or any(len(m) != size or any(len(row) != size for row in m) for m in self.matrices):
            raise ValueError(f"alignment: every matrix must be {size} x {size}, one per trained continuous code")
        if self.by is None and len(self.matrices) != 1:
            raise ValueError("alignment: one matrix unless `by` names a categorical code")
        if any(not low < high for low, high in self.trained_bounds):
            raise ValueError("alignment: trained_bounds need low < high")


@dataclass(frozen=True)
class LatentLayout:
    """Noise z plus codes c1, c2, ... in the paper's order (categorical first, then continuous)."""

    noise_dim: int
    codes: tuple[Code, ...]
    noise: Literal["normal", "uniform"] = "normal"
    alignment: Alignment | None = None  # set when the continuous codes were aligned after training

    def __post_init__(self) -> None:
        if self.noise_dim < 1:
            raise ValueError("noise_dim must be >= 1")
        if self.noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be normal or uniform, got {self.noise!r}")
        names = [code.name for code in self.codes]
        if len(set(names)) != len(names):
            raise ValueError(f"code names must be unique, got {names}")
        kinds = [code.kind for code in self.codes]
        if kinds != sorted(kinds):  # "categorical" < "continuous": the order the generator input uses
            raise ValueError("categorical codes must come before continuous codes")
        if self.alignment is not None:
            if len(self.alignment.trained_bounds) != len(self.continuous):
                raise ValueError("alignment: one trained code per continuous code")
            by = self.alignment.by
            if by is not None and (by not in names or self.code(by).kind != "categorical"
                                   or self.code(by).size != len(self.alignment.matrices)):
                raise ValueError(f"alignment: `by` must name a categorical code with one matrix per value, got {by!r}")

    @classmethod
    def build(cls, noise_dim: int, categorical: list[int], continuous: int, noise: str = "normal") -> LatentLayout:
        """Names the codes c1, c2, ... in order: the categorical ones, then the continuous ones."""
        if continuous < 0:  # range() would silently read a negative count as none
            raise ValueError(f"continuous must be >= 0, got {continuous}")
        codes = [Code(f"c{i + 1}", "categorical", size=size) for i, size in enumerate(categorical)]
        codes += [Code(f"c{len(codes) + i + 1}", "continuous") for i in range(continuous)]
        return cls(noise_dim=noise_dim, codes=tuple(codes), noise=noise)  # type: ignore[arg-type]

    @property
    def categorical(self) -> list[Code]:
        return [code for code in self.codes if code.kind == "categorical"]

    @property
    def continuous(self) -> list[Code]:
        return [code for code in self.codes if code.kind == "continuous"]

    def categorical_columns(self) -> list[tuple[Code, slice]]:
        """Each categorical code with its columns in the codes' concatenated one-hots, logits or probabilities
        (the layout of G's input and of Q's categorical output)."""
        columns, start = [], 0
        for code in self.categorical:
            columns.append((code, slice(start, start + code.size)))
            start += code.size
        return columns

    @property
    def categorical_entropy(self) -> float:
        """H(c) of all categorical codes together, in nats: the bound of the categorical L_I."""
        return sum(code.entropy for code in self.categorical)

    @property
    def input_dim(self) -> int:
        """Width of the generator's input: noise, one-hot categorical codes, continuous codes."""
        return self.noise_dim + sum(code.size for code in self.codes)

    def code(self, key: str | int) -> Code:
        """A code by name ("c2", "slant") or by 1-based index (2, or "2")."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            index = int(key)
            if 1 <= index <= len(self.codes):
                return self.codes[index - 1]
        else:
            for code in self.codes:
                if code.name == key:
                    return code
        raise KeyError(f"unknown code {key!r}; this model has {', '.join(c.name for c in self.codes)}")

    def with_labels(self, code_name: str, labels: list[str]) -> LatentLayout:
        codes = tuple(
            Code(c.name, c.kind, c.size, c.low, c.high, list(labels)) if c.name == code_name else c for c in self.codes
        )
        return replace(self, codes=codes)

    def to_dict(self) -> dict:
        data = {"noise_dim": self.noise_dim, "noise": self.noise, "codes": [asdict(code) for code in self.codes]}
        if self.alignment is not None:
            data["alignment"] = asdict(self.alignment)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> LatentLayout:
        try:
            codes = tuple(Code(**code) for code in data["codes"])
            alignment = data.get("alignment")
            if alignment is not None:
                alignment = Alignment(
                    matrices=tuple(tuple(tuple(float(x) for x in row) for row in m) for m in alignment["matrices"]),
                    trained_bounds=tuple((float(low), float(high)) for low, high in alignment["trained_bounds"]),
                    by=alignment.get("by"), method=alignment.get("method", ""))
            return cls(noise_dim=int(data["noise_dim"]), codes=codes, noise=data.get("noise", "normal"),
                       alignment=alignment)
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a latent layout: {error}") from error

    @classmethod
    def from_json(cls, text: str) -> LatentLayout:
        return cls.from_dict(json.loads(text))
