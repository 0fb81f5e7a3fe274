"""The OpenAPI schema of the served model: what each code, label and traversal target may be, exactly.

FastAPI's generated schema can only say "a number" or "a string" where the loaded model decides what is valid
(code names, category counts, continuous ranges, the label map). This fills those in from the latent layout,
so that a request valid by the schema is one the service accepts, and generated clients know the codes.
"""

from __future__ import annotations

from infogan.latent import Code, LatentLayout
from service.latents import CONTINUOUS_LIMIT


def value_schema(code: Code) -> dict:
    if code.kind == "categorical":
        return {"type": "integer", "minimum": 0, "maximum": code.size - 1, "description": f"{code.name}: a category"}
    return {"type": "number", "minimum": -CONTINUOUS_LIMIT, "maximum": CONTINUOUS_LIMIT,
            "description": f"{code.name}: prior [{code.low:g}, {code.high:g}]"}


def code_keys(layout: LatentLayout) -> list[str]:
    """Every way to name a code: its name and its 1-based index."""
    return [code.name for code in layout.codes] + [str(i) for i in range(1, len(layout.codes) + 1)]


def request_examples(layout: LatentLayout) -> list[dict]:
    """/generate bodies in this model's own terms: its code names, a label of its label map."""
    named = {code.name: (min(7, code.size - 1) if code.kind == "categorical" else 1.5) for code in layout.codes[:2]}
    listed = [min(3, code.size - 1) if code.kind == "categorical" else 0.0 for code in layout.codes]
    examples = [{"codes": named, "n": 4, "seed": 42}, {"codes": listed, "seed": 0}]
    labels = next((code.labels for code in layout.categorical if code.labels), None)
    if labels:
        examples.append({"label": labels[0], "n": 16})
    return examples


def with_model(openapi: dict, layout: LatentLayout) -> dict:
    """The generated schema with the model's codes, labels, traversal targets and examples filled in (in place)."""
    openapi["components"]["schemas"]["GenerateRequest"]["examples"] = request_examples(layout)
    request = openapi["components"]["schemas"]["GenerateRequest"]["properties"]
    values = [value_schema(code) for code in layout.codes]
    by_key = dict(zip(code_keys(layout), values + values))
    request["codes"] = {"description": request["codes"].get("description", ""), "anyOf": [
        {"type": "array", "prefixItems": values, "items": False, "minItems": len(values), "maxItems": len(values)},
        {"type": "object", "properties": by_key, "additionalProperties": False},
        {"type": "null"},
    ]}
    labels = next((code.labels for code in layout.categorical if code.labels), None)
    request["label"] = {"description": request["label"].get("description", ""),
                        "anyOf": [{"type": "string", "enum": labels}, {"type": "null"}] if labels else [{"type": "null"}]}
    for parameter in openapi["paths"]["/generate"]["get"]["parameters"]:
        if parameter["name"] == "label":
            parameter["schema"] = request["label"]["anyOf"][0] if labels else {"type": "null"}
    for parameter in openapi["paths"]["/traverse"]["get"]["parameters"]:
        if parameter["name"] == "code":
            parameter["schema"] = {"type": "string", "enum": code_keys(layout), "title": "Code"}
            parameter["examples"] = {key: {"value": key} for key in ["1", *(c.name for c in layout.codes[1:2])]}
    return openapi


BEARER = "bearerAuth"


def with_bearer_auth(schema: dict, open_paths: set[str]) -> dict:
    """The schema of a service run with API_KEY: a bearer scheme, required by every operation outside
    `open_paths`, so that /docs' "Authorize" sends the key and generated clients know to."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http", "scheme": "bearer", "description": "the service's API_KEY, sent as `Authorization: Bearer <key>`"}
    for path, operations in schema.get("paths", {}).items():
        if path not in open_paths:
            for operation in operations.values():
                operation["security"] = [{BEARER: []}]
    return schema
