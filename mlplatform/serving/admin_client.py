"""The admin surface of a running prediction API, from the command line (`mlplatform routing --api URL`).

The token is read from `MLPLATFORM_ADMIN_TOKEN`, never from an argument (which would land in the shell
history and the process list). Standard library only: the CLI needs no HTTP client package.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from mlplatform.serving.routing import RoutingPolicy

# bandit B105: the variable's name, not a secret
ADMIN_TOKEN_VARIABLE = "MLPLATFORM_ADMIN_TOKEN"  # nosec B105
TIMEOUT_SECONDS = 10


class AdminError(RuntimeError):
    """The API refused or could not be reached; the message says which, never the token."""


def routing_through_api(base_url: str, policy: RoutingPolicy | None = None, token: str | None = None) -> dict:
    """`GET /routing` (policy None) or `PUT /routing` on the API at `base_url`; the API's answer."""
    token = token if token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE, "")
    if not token:
        raise AdminError(f"set {ADMIN_TOKEN_VARIABLE} to the API's admin token")
    url = urllib.parse.urlsplit(base_url.rstrip("/") + "/routing")
    if url.scheme not in ("http", "https") or not url.netloc:
        raise AdminError(f"--api must be an http(s) URL, not {base_url!r}")
    body = None if policy is None else policy.model_dump_json().encode()
    request = urllib.request.Request(
        url.geturl(),
        data=body,
        method="GET" if policy is None else "PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        # the scheme was checked above to be http or https (what bandit B310 asks)
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # nosec B310
            return json.loads(response.read())
    except urllib.error.HTTPError as refused:
        raise AdminError(f"{url.geturl()} answered {refused.code}: {_reason(refused)}") from None
    except (urllib.error.URLError, OSError) as unreachable:
        raise AdminError(f"{url.geturl()} could not be reached: {unreachable}") from None


def _reason(refused: urllib.error.HTTPError) -> str:
    """The messages of the API's error body (`detail[].msg`), or the HTTP reason."""
    try:
        detail = json.loads(refused.read()).get("detail", [])
        return "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])[1:]))}: {e['msg']}" if e.get("loc") else e["msg"]
            for e in detail
        )
    except (ValueError, AttributeError, KeyError, TypeError):
        return str(refused.reason)
