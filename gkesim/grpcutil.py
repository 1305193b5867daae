"""Shared plumbing for the simulator's gRPC services: unary handlers and rich error statuses (the server that
assembles them is gkesim/server.py).

Handlers return the response already serialized (bytes), so a read can serialize the fleet's own message once,
under the fleet lock, instead of copying it into a second message first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gkesim.errors import SimError

# Google answers a call to a disabled API with PERMISSION_DENIED and ErrorInfo reason SERVICE_DISABLED;
# google.api_core exposes it as `exc.reason`, which is how a client tells "API off" from "no permission".
_DISABLED_RE = re.compile(r"has not been used in project (\S+) before or it is disabled")
_QUOTA_RE = re.compile(r"for quota metric '([^']+)' of service '([^']+)' for consumer '([^']+)'")


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def error_details(err: SimError) -> list[any_pb2.Any]:
    """google.rpc details Google attaches to this kind of error (RetryInfo, ErrorInfo)."""
    details: list[any_pb2.Any] = []
    reason = getattr(err, "reason", None)
    metadata: dict[str, str] = {}
    if err.code == grpc.StatusCode.PERMISSION_DENIED and (m := _DISABLED_RE.search(err.message)):
        reason = reason or "SERVICE_DISABLED"
        metadata = {"service": "container.googleapis.com", "consumer": f"projects/{m.group(1)}"}
    elif err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and (m := _QUOTA_RE.search(err.message)):
        reason = reason or "RATE_LIMIT_EXCEEDED"
        metadata = {"quota_metric": m.group(1), "service": m.group(2), "consumer": m.group(3)}
    if reason:
        details.append(
            _pack(error_details_pb2.ErrorInfo(reason=reason, domain="googleapis.com", metadata=metadata))
        )
    if err.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(0.0, err.retry_delay) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return details


def abort(context: grpc.ServicerContext, err: SimError) -> None:
    """End the call with the error's code and message, plus rich details in grpc-status-details-bin."""
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=error_details(err))
    context.abort_with_status(rpc_status.to_status(status))


def unary(
    method: str,
    request_deserializer: Callable[[bytes], Any],
    behaviour: Callable[[Any], bytes],
) -> grpc.RpcMethodHandler:
    """A unary-unary handler whose behaviour takes the request and returns the serialized response.

    SimError, raised anywhere in the behaviour, becomes the call's status.
    """

    def handle(request: Any, context: grpc.ServicerContext) -> bytes:
        try:
            return behaviour(request)
        except SimError as err:
            abort(context, err)
            raise AssertionError("unreachable: abort_with_status raises") from err

    handle.__name__ = method
    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=request_deserializer)


def invalid(message: str) -> SimError:
    return SimError(grpc.StatusCode.INVALID_ARGUMENT, message)
