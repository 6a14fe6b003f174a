"""OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx
status for the client's mistakes and 5xx for the server's."""
from __future__ import annotations

from typing import Optional

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import PyrtError, UnsupportedError


class APIError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def from_pyrt_error(exc: PyrtError) -> APIError:
    """A bad argument (a ValueError or TypeError kind of PyrtError, or a valid request this model
    cannot serve) is the client's 400; anything else (device, I/O, internal) is a 500."""
    if isinstance(exc, (ValueError, TypeError, UnsupportedError)):
        return APIError(400, str(exc) or type(exc).__name__, code=type(exc).__name__)
    return APIError(500, f"{type(exc).__name__}: {exc}", type="server_error", code=type(exc).__name__)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc if isinstance(exc, APIError) else APIError(500, str(exc), type="server_error"))


async def handle_pyrt_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(from_pyrt_error(exc))  # type: ignore[arg-type]


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "") or "error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(status)
    return error_response(APIError(status, f"{request.method} {request.url.path}: {detail}", code=code))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error"))
