"""python -m service.healthcheck: exit 0 when the local service answers /readyz with 200 (the image's HEALTHCHECK).

Uses only the standard library and the service's own PORT setting, so the image needs no curl.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.settings import Settings


def main() -> int:
    url = f"http://127.0.0.1:{Settings().port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
