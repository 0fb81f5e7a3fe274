"""The service's JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as StarletteJSONResponse


class JSONResponse(StarletteJSONResponse):
    """JSON with every non-ASCII character escaped. Errors echo what a client sent (a field name, a label), and
    valid JSON may carry text UTF-8 cannot encode (a lone surrogate, "\\ud800"): escaped, it is still answered."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
