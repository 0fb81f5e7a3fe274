"""The Open Inference Protocol (KServe V2, REST), beside the service's own API.

Every served model's two ONNX files as V2 models `MODEL.generator` and `MODEL.encoder` (the bare `generator` and
`encoder` are the default model's), served as Triton would serve them: the files' own tensor names, datatypes
and shapes (-1 for the batch). Triton's model repository extension lists them and (re)loads or unloads a model
(`POST /v2/repository/index`, `/v2/repository/models/NAME/load`, `/unload`). Requests are JSON, or JSON followed
by raw tensor bytes (the binary tensor data extension, what the stock Triton client sends by default). Inference
goes through the engine like every other route: the same admission, deadline (X-Request-Timeout), batcher and
metrics. Errors are V2's `{"error": "..."}`: 400 for a bad request, 404 for an unknown model, 503 + Retry-After
when the service sheds load.
"""

from __future__ import annotations

import json
import math
import weakref
import zlib
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Header, Request, Response

from infogan import __version__
from service import schemas
from service.engine import SESSIONS, Engine, Session, split_v2_name, v2_name
from service.errors import V2Error
from service.handling import unless_disconnected
from service.responses import JSONResponse
from service.routes import RequestTimeout

router = APIRouter(prefix="/v2", include_in_schema=False)  # V2 has its own specification; /docs is the service's API
VERSION = "1"
HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {"tensor(float)": ("FP32", np.dtype("<f4")), "tensor(int64)": ("INT64", np.dtype("<i8"))}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 where the file leaves the size open (the batch)

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def tensor_specs(args: list) -> list[TensorSpec]:
    """onnxruntime's NodeArgs as V2 tensors; a named or missing dimension is -1."""
    return [TensorSpec(arg.name, *DATATYPES[arg.type], tuple(d if isinstance(d, int) else -1 for d in arg.shape))
            for arg in args]


SPECS: weakref.WeakKeyDictionary[Engine, dict] = weakref.WeakKeyDictionary()  # an engine's sessions never change


def served_sessions(engine: Engine) -> dict[str, tuple[list[TensorSpec], list[TensorSpec]]]:
    if engine not in SPECS:
        sessions = {"generator": engine.model.generator, "encoder": engine.model.encoder}
        SPECS[engine] = {name: (tensor_specs(session.get_inputs()), tensor_specs(session.get_outputs()))
                         for name, session in sessions.items() if session is not None}
    return SPECS[engine]


def v2_names(engine: Engine) -> list[str]:
    return [v2_name(engine.name, session) for session in served_sessions(engine)]


def resolve(request: Request, name: str, version: str | None) -> tuple[Engine, Session, list, list]:
    """A V2 model name (and version) to its engine, its session and that session's input and output specs."""
    repository = request.app.state.repository
    model, session = split_v2_name(name)
    engine = repository.find(model or None)
    if engine is None or session not in served_sessions(engine):
        known = [n for e in repository.engines.values() for n in v2_names(e)]
        raise V2Error(404, f"unknown model {brief(name)}; this server has {', '.join(sorted(known))}")
    if version not in (None, VERSION):
        raise V2Error(404, f"model {name!r} has no version {brief(version)}; it has version {VERSION}")
    return engine, session, *served_sessions(engine)[session]


# --- reading an inference request ---------------------------------------------------------------------------

def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A gzip or deflate body (the Triton client can send either), never inflated past `limit` bytes."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise V2Error(400, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise V2Error(400, f"body is not valid {encoding}: {error}") from None
    if len(data) > limit:
        raise V2Error(413, f"request body over {limit} bytes once decompressed")
    return data


def is_decimal(text: str) -> bool:
    """ASCII digits only, few enough for int() (str.isdigit() also takes "²" and other digits int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def brief(value: object, limit: int = 80) -> str:
    """A client's value quoted in an error message, cut to `limit` characters; an integer too long for str()
    (over 4,300 digits) is described, not converted."""
    try:
        text = repr(value)
    except ValueError:
        text = "<a number too long to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference header and the binary tensor data after it (empty without the extension)."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not is_decimal(header_length) or not 0 < int(header_length) <= len(body):
            raise V2Error(400, f"{HEADER_LENGTH} must be the JSON header's length in bytes, between 1 and the body's "
                          f"{len(body)}, got {brief(header_length)}")
        json_part, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        request = json.loads(json_part)
    except (ValueError, RecursionError) as error:  # bad UTF-8 and lone surrogates are ValueErrors too
        raise V2Error(400, f"the inference request is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(request, dict):
        raise V2Error(400, "the inference request must be a JSON object with an \"inputs\" list")
    return request, binary


def checked_shape(raw: object, spec: TensorSpec) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise V2Error(400, f"input {spec.name!r}: shape must be a list of non-negative integers, got {brief(raw)}")
    if len(raw) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, raw)):
        raise V2Error(400, f"input {spec.name!r}: shape {brief(raw)} does not fit the model's {list(spec.shape)}")
    if any(want == -1 and got > schemas.MAX_IMAGES for want, got in zip(spec.shape, raw)):
        raise V2Error(400, f"input {spec.name!r}: batch size must be between 1 and {schemas.MAX_IMAGES}, got {brief(raw)}")
    return tuple(raw)


def tensor_data(tensor: dict, spec: TensorSpec, shape: tuple[int, ...], binary: memoryview,
                offset: int) -> tuple[np.ndarray, int]:
    """One input's values (from its JSON "data" or its slice of the binary data) and the binary offset after it."""
    count = math.prod(shape)
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise V2Error(400, f"input {spec.name!r}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != count * spec.dtype.itemsize:
            raise V2Error(400, f"input {spec.name!r}: binary_data_size must be {count * spec.dtype.itemsize} "
                          f"({count} x {spec.datatype}), got {brief(size)}")
        if offset + size > len(binary):
            raise V2Error(400, f"input {spec.name!r}: {size} bytes of binary data announced, {len(binary) - offset} left")
        return np.frombuffer(binary[offset : offset + size], dtype=spec.dtype).reshape(shape), offset + size
    if "data" not in tensor:
        raise V2Error(400, f"input {spec.name!r}: give \"data\" or parameters.binary_data_size")
    try:
        values = np.asarray(tensor["data"])
    except (ValueError, TypeError, OverflowError, RecursionError):
        values = np.asarray([None], dtype=object)
    wanted = "f" if spec.datatype == "FP32" else "i"
    if values.dtype.kind not in ("i", "u", wanted) or values.size != count:
        kind = "numbers" if spec.datatype == "FP32" else "integers"
        raise V2Error(400, f"input {spec.name!r}: data must be {count} {kind} for shape {list(shape)} "
                      f"({spec.datatype}), got {values.size} value(s) of kind {values.dtype.name}")
    return values.reshape(shape).astype(spec.dtype), offset


def parse_inputs(request: dict, binary: bytes, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The model's feeds: exactly its inputs, by name, with its datatypes and shapes and one batch size."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise V2Error(400, "\"inputs\" must be a list of tensors {name, shape, datatype, data}")
    by_name = {spec.name: spec for spec in specs}
    feeds: dict[str, np.ndarray] = {}
    offset, view = 0, memoryview(binary)
    for tensor in inputs:
        name = tensor.get("name")
        if name not in by_name:
            raise V2Error(400, f"unknown input {brief(name)}; the model's inputs are {', '.join(by_name)}")
        if name in feeds:
            raise V2Error(400, f"input {name!r} is given twice")
        spec = by_name[name]
        if tensor.get("datatype") != spec.datatype:
            raise V2Error(400, f"input {name!r}: datatype must be {spec.datatype}, got {brief(tensor.get('datatype'))}")
        feeds[name], offset = tensor_data(tensor, spec, checked_shape(tensor.get("shape"), spec), view, offset)
    if missing := [name for name in by_name if name not in feeds]:
        raise V2Error(400, f"missing input(s) {', '.join(missing)}")
    if offset != len(binary):
        raise V2Error(400, f"{len(binary) - offset} bytes of binary data belong to no input")
    batches = {len(array) for array in feeds.values()}
    if len(batches) != 1:
        raise V2Error(400, f"every input needs the same batch size, got {sorted(batches)}")
    batch = batches.pop()
    if not 1 <= batch <= schemas.MAX_IMAGES:
        raise V2Error(400, f"batch size must be between 1 and {schemas.MAX_IMAGES}, got {batch}")
    for name, array in feeds.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise V2Error(400, f"input {name!r}: every value must be finite")
    return feeds


def check_codes(engine: Engine, feeds: dict[str, np.ndarray]) -> None:
    """The generator's categorical inputs index one-hot tables: a value out of range must not reach the model."""
    for column, code in enumerate(engine.model.layout.categorical):
        values = feeds["categorical"][:, column]
        if values.min() < 0 or values.max() >= code.size:
            raise V2Error(400, f"input 'categorical': column {column} ({code.name}) must be in [0, {code.size}), "
                          f"got {int(values.min())}..{int(values.max())}")


def requested_outputs(request: dict, specs: list[TensorSpec]) -> list[tuple[int, bool]]:
    """(index in the model's outputs, as binary data?) for each output to return, in the order asked."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise V2Error(400, "\"parameters\" must be an object")
    binary_default = parameters.get("binary_data_output") is True
    wanted = request.get("outputs")
    if wanted is None:
        return [(index, binary_default) for index in range(len(specs))]
    names = [spec.name for spec in specs]
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise V2Error(400, "\"outputs\" must be a list of {name, parameters}")
    chosen = []
    for output in wanted:
        if output.get("name") not in names:
            raise V2Error(400, f"unknown output {brief(output.get('name'))}; the model's outputs are {', '.join(names)}")
        flags = output.get("parameters") or {}
        binary = flags.get("binary_data", binary_default) if isinstance(flags, dict) else binary_default
        chosen.append((names.index(output["name"]), binary is True))
    return chosen


def infer_response(name: str, request: dict, outputs: list[np.ndarray], specs: list[TensorSpec],
                   chosen: list[tuple[int, bool]]) -> Response:
    tensors, chunks = [], []
    for index, binary in chosen:
        array = np.ascontiguousarray(outputs[index], dtype=specs[index].dtype)
        tensor = {"name": specs[index].name, "datatype": specs[index].datatype, "shape": list(array.shape)}
        if binary:
            chunks.append(array.tobytes())
            tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    answer = {"model_name": name, "model_version": VERSION, "outputs": tensors}
    if isinstance(request.get("id"), str):
        answer["id"] = request["id"]
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


# --- routes ---------------------------------------------------------------------------------------------------

@router.get("")
async def server_metadata() -> dict:
    return {"name": "infogan-serve", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    is_ready = request.app.state.repository.ready
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str, version: str | None = None) -> dict:
    _, _, inputs, outputs = resolve(request, name, version)
    return {"name": name, "versions": [VERSION], "platform": "onnxruntime_onnx",
            "inputs": [spec.metadata() for spec in inputs], "outputs": [spec.metadata() for spec in outputs]}


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    engine, *_ = resolve(request, name, version)
    is_ready = engine.ready and not request.app.state.repository.draining
    return JSONResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 503)


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(request: Request, name: str, version: str | None = None, timeout_s: RequestTimeout = None,
                header_length: str | None = Header(None, alias=HEADER_LENGTH),
                encoding: str | None = Header(None, alias="Content-Encoding")) -> Response:
    engine, session, inputs, outputs = resolve(request, name, version)
    body = decompress(await request.body(), encoding, engine.settings.max_body_bytes)
    parsed, binary = split_body(body, header_length)
    feeds = parse_inputs(parsed, binary, inputs)
    chosen = requested_outputs(parsed, outputs)
    if session == "generator":
        check_codes(engine, feeds)
    # Shedding (Overloaded, DeadlineExceeded) is answered by the app's handler, in V2's shape on /v2 paths.
    results = await unless_disconnected(request.receive, request.app.state.metrics, engine.infer(session, feeds, timeout_s))
    for spec, result in zip(outputs, results):
        if not np.isfinite(result).all():  # finite inputs far outside the prior can overflow the model's arithmetic
            raise V2Error(400, f"output {spec.name!r} is not finite for these inputs: values of "
                          f"{', '.join(repr(n) for n in feeds)} far outside the model's prior overflow it")
    return infer_response(name, parsed, results, outputs, chosen)


# --- Triton's model repository extension -------------------------------------------------------------------------

def repository_name(name: str) -> str:
    """A repository model's name from a load or unload path: the folder's name, or one of its V2 names."""
    model, session = split_v2_name(name)
    return model if model and session in SESSIONS else name


@router.post("/repository/index")
async def repository_index(request: Request) -> list[dict]:
    """Every session of every model in the repository, loaded or not (`{"ready": true}`: the loaded ones)."""
    body = await request.body()
    try:
        wanted = json.loads(body or b"{}")
    except ValueError:
        raise V2Error(400, "the index request body must be JSON, e.g. {} or {\"ready\": true}") from None
    only_ready = isinstance(wanted, dict) and wanted.get("ready") is True
    repository = request.app.state.repository
    entries = []
    for entry in repository.index():
        for session in entry["sessions"]:
            ready = entry["state"] == "READY"
            if ready or not only_ready:
                entries.append({"name": v2_name(entry["name"], session), "version": VERSION, "state": entry["state"],
                                **({} if ready else {"reason": "unloaded"})})
    return entries


@router.post("/repository/models/{name}/load")
async def repository_load(request: Request, name: str) -> JSONResponse:
    """(Re)loads a model from its folder; answers once the new version serves (400 naming the file if it cannot
    be served, while the old version keeps serving)."""
    await request.app.state.repository.load(repository_name(name))
    return JSONResponse({})


@router.post("/repository/models/{name}/unload")
async def repository_unload(request: Request, name: str) -> JSONResponse:
    await request.app.state.repository.unload(repository_name(name))
    return JSONResponse({})
