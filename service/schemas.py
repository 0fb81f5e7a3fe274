"""Request and response bodies of the API (validation and OpenAPI documentation only; no logic)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt

from infogan.images import FRAMING_KINDS
from service.latents import CONTINUOUS_LIMIT

CodeValue = StrictInt | StrictFloat


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema has it: 53 or 53.0, never "53", true or 53.5.
WholeNumber = Annotated[StrictInt, BeforeValidator(_integral)]
MAX_IMAGES = 64
MAX_SEED = 2**53 - 1  # exact in every JSON parser, JavaScript's included


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # examples in the model's own code names: service/contract.py

    codes: list[CodeValue] | dict[str, CodeValue] | None = Field(
        None, description="one value per code in index order, or {code name: value}. Categorical: an integer in "
        f"[0, size). Continuous: a finite number in [{-CONTINUOUS_LIMIT:g}, {CONTINUOUS_LIMIT:g}] (prior [-1, 1]). Codes not "
        "given are drawn from their prior.")
    label: str | None = Field(None, description="a class label of the model's label map (e.g. \"7\"); selects that "
                              "categorical value")
    n: WholeNumber = Field(1, ge=1, le=MAX_IMAGES, description="number of images; they share the given codes")
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED), BeforeValidator(_integral)] | None = Field(
        None, description="makes the output reproducible: image i's noise and prior draws depend only on (seed, i)")


class GeneratedImage(BaseModel):
    png_base64: str
    codes: dict[str, int | float] = Field(description="the value of every code for this image")


class GenerateResponse(BaseModel):
    seed: int
    images: list[GeneratedImage]


class TraverseRow(BaseModel):
    codes: dict[str, int | float] = Field(description="the codes held fixed along this row")
    images: list[str] = Field(description="PNG images, base64, one per traversed value")


class TraverseResponse(BaseModel):
    code: str
    seed: int
    values: list[int | float]
    rows: list[TraverseRow]


class CategoricalPosterior(BaseModel):
    value: int = Field(description="the most probable value")
    probabilities: list[float]


class EncodeResponse(BaseModel):
    codes: dict[str, CategoricalPosterior | float] = Field(
        description="categorical codes: the posterior; continuous codes: Q's mean")
    label: str | None = Field(description="the class of c1's value, when the model has a label map")


class CodeInfo(BaseModel):
    index: int
    name: str
    kind: Literal["categorical", "continuous"]
    size: int | None = None
    low: float | None = None
    high: float | None = None
    labels: list[str] | None = None


class ImageInfo(BaseModel):
    channels: int
    height: int
    width: int
    framing: Literal[FRAMING_KINDS] = Field(  # type: ignore[valid-type]
        description="how /encode frames a grey upload, as the model's data set frames its images: mnist (the "
        "content fitted into 20/28 of the frame, its centre of mass centred), fill (its longer side filling the "
        "frame, centred), resize (the whole image resized)")


class ModelInfo(BaseModel):
    name: str | None
    version: str | None
    dataset: str | None
    sha256: dict[str, str]


class Limits(BaseModel):
    max_images_per_request: int
    max_traverse_rows: int
    max_traverse_steps: int
    continuous_range: list[float]
    max_body_bytes: int
    max_upload_bytes: int
    max_upload_side: int


class AlignmentInfo(BaseModel):
    by: str | None = Field(description="the categorical code with one map per value, or null for one map for all")
    method: str = Field(description="how the continuous codes' axes were chosen after training (export/align.py)")


class InfoResponse(BaseModel):
    model: ModelInfo
    image: ImageInfo
    noise_dim: int
    codes: list[CodeInfo]
    alignment: AlignmentInfo | None = Field(description="set when the continuous codes were aligned with the "
                                            "factors they move after training; null: the codes as trained")
    provider: str
    encoder: bool
    traverse_range: list[float] = Field(description="the continuous range /traverse sweeps by default: the widest "
                                        "along which the codes were measured to keep the digit")
    identity: dict[str, dict[str, float]] | None = Field(description="per continuous code and range, the share of a "
                                                         "sweep's frames a digit classifier reads as the middle "
                                                         "frame's digit; null: not measured")
    limits: Limits


class ErrorResponse(BaseModel):
    detail: str | list[dict]


class ServedModel(BaseModel):
    name: str = Field(description="the folder name in MODEL_REPOSITORY; `?model=` takes it")
    version: str | None = Field(description="model.json's version")
    dataset: str | None
    sha256: dict[str, str] = Field(description="the served files' hashes (they make the ETags)")
    ready: bool


class ModelsResponse(BaseModel):
    default: str = Field(description="the model a request that names none is answered by (DEFAULT_MODEL)")
    models: list[ServedModel]
