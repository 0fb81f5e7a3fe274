"""HTTP caching of answers that are pure functions of the model and the request.

With a seed, an image or a traversal grid never changes for a given model: such a GET carries a strong ETag
(the model files' hashes and the normalised request) and `Cache-Control: public, max-age=..., immutable`, so
browsers, CDNs and proxies may keep it, and `If-None-Match` is answered 304 before any work is queued. An
answer drawn with a random seed is `no-store`.
"""

from __future__ import annotations

import hashlib
import json

from fastapi import Response

IMMUTABLE = "public, max-age=31536000, immutable"  # a year, the longest RFC 9111 advises
UNCACHEABLE = {"Cache-Control": "no-store"}


def model_key(sha256: dict[str, str]) -> str:
    """One digest of every file of the served model: a new model changes every tag."""
    return hashlib.sha256(json.dumps(sha256, sort_keys=True).encode()).hexdigest()


def entity_tag(model: str, route: str, request: dict) -> str:
    """A strong ETag for the normalised request (values checked and typed, codes by name, the response format)."""
    text = json.dumps({"model": model, "route": route, **request}, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def fixed_headers(tag: str) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": IMMUTABLE, "Vary": "Accept"}


def matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110's weak comparison for If-None-Match: `*`, or any listed tag equal to ours once W/ is dropped."""
    if not if_none_match:
        return False
    listed = [part.strip().removeprefix("W/") for part in if_none_match.split(",")]
    return "*" in listed or tag in listed


def not_modified(tag: str) -> Response:
    return Response(status_code=304, headers=fixed_headers(tag))
