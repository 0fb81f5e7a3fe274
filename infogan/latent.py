"""The latent layout: the one definition of InfoGAN's noise and codes.

Pure Python (no torch, no numpy) so the service can read it from ONNX metadata
without the training stack. Training, checkpoints, the exported ONNX files and
the service all use this class; nothing else describes the codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
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
class LatentLayout:
    """Noise z plus codes c1, c2, ... in the paper's order (categorical first, then continuous)."""

    noise_dim: int
    codes: tuple[Code, ...]
    noise: Literal["normal", "uniform"] = "normal"

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

    @property
    def categorical_entropy(self) -> float:
        """H(c) of all categorical codes together, in nats: the bound of the categorical L_I."""
        return sum(code.entropy for code in self.categorical)

    @property
    def input_dim(self) -> int:
        """Width of the generator's input: noise, one-hot categorical codes, continuous codes."""
        return self.noise_dim + sum(code.size for code in self.codes)

    def code(self, key: str | int) -> Code:
        """A code by name ("c2") or by 1-based index (2, or "2")."""
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
        return LatentLayout(self.noise_dim, codes, self.noise)

    def to_dict(self) -> dict:
        return {"noise_dim": self.noise_dim, "noise": self.noise, "codes": [asdict(code) for code in self.codes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> LatentLayout:
        try:
            codes = tuple(Code(**code) for code in data["codes"])
            return cls(noise_dim=int(data["noise_dim"]), codes=codes, noise=data.get("noise", "normal"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a latent layout: {error}") from error

    @classmethod
    def from_json(cls, text: str) -> LatentLayout:
        return cls.from_dict(json.loads(text))
