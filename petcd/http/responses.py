"""The plain-text answers of Go's net/http and of grpc-gateway, byte for byte as etcd sends them."""

from __future__ import annotations

from petcd.http.server import Response

_TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]


def text_error(status: int, text: str) -> Response:
    """Go's http.Error: the text and a newline, as nosniff plain text."""
    return Response(status, list(_TEXT), (text + "\n").encode())


def not_found() -> Response:
    """What Go's ServeMux answers for a path nobody registered."""
    return text_error(404, "404 page not found")


def method_not_allowed(allow: str = "GET") -> Response:
    """etcd's handlers for GET-only paths (health, version)."""
    resp = text_error(405, "Method Not Allowed")
    resp.headers.append(("Allow", allow))
    return resp


def redirect_to_subtree(path: str) -> Response:
    """Go's ServeMux sends /v3 to /v3/ when only the subtree is registered."""
    body = f'<a href="{path}">Moved Permanently</a>.\n\n'.encode()
    return Response(301, [("Content-Type", "text/html; charset=utf-8"), ("Location", path)], body)


def json_response(status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", "application/json"), *(extra or [])], body)
