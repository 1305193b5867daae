"""The one error the simulator's state raises; each server maps it onto its own protocol."""

from __future__ import annotations

import grpc

# gRPC status -> HTTP status, as Google's REST front ends map them.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class SimError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, retry_delay: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_delay = retry_delay  # seconds, sent as google.rpc.RetryInfo where the protocol allows

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)
