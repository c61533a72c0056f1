"""The wire under the clients: TLS verification, a wall-clock deadline on every socket
operation, and what a transport failure means (which error, and whether the request may have
reached Salesforce).

httpx's timeouts are per socket operation: a server that drips one byte every half second never
trips a read timeout. The deadline of the request being sent lives in a context variable (each
thread and each asyncio task has its own), and the network backend below shortens every connect,
read and write to what is left of it.
"""

from __future__ import annotations

import contextvars
import socket
import ssl
import time
from typing import Any, Callable, Iterator

import httpcore
import httpx

from sf_oauth_provider.client.errors import SalesforceConnectionError, SalesforceHostError, SalesforceOAuthError

__all__ = ["tls_verify", "DeadlineTransport", "Deadline", "with_deadlines", "DeadlineBackend",
           "AsyncDeadlineBackend", "transport_error"]


def tls_verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: the default store, or a context that trusts the PEM ``ca_bundle``."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


# ---- wall-clock deadline ------------------------------------------------------------------------
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("sf_oauth_deadline", default=None)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's wall-clock deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _AsyncDeadlineStream(
            await self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _AsyncDeadlineStream(await self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _AsyncDeadlineStream(
            await self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def with_deadlines(transport: Any, wrapper: Callable[[Any], Any]) -> Any:
    """Put the deadline backend under an httpx transport's connection pool.

    httpx does not take a network backend as an argument; its pool keeps it in
    ``_network_backend`` (httpcore 1.x). Fail loudly rather than silently lose the deadline.
    """
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):  # pragma: no cover - guards an httpcore upgrade
        raise RuntimeError("this httpcore version has no pluggable network backend; the deadline cannot be enforced")
    pool._network_backend = wrapper(pool._network_backend)
    return transport


class Deadline:
    """Sets the deadline of one request for the code (and the network backend) inside it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(self.deadline)

    def __exit__(self, *exc: object) -> None:
        _DEADLINE.reset(self._token)


class _DeadlineBody(httpx.SyncByteStream):
    """A response body read under its request's deadline, chunk by chunk (the deadline is set
    around each read only, never across a ``yield`` into the caller's code)."""

    def __init__(self, inner: Any, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with Deadline(self._deadline):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport whose every request, body included, ends within ``seconds`` of wall-clock
    time however slowly the server drips its answer (the hook's ``get_conn()`` uses it).

    :param seconds: the wall-clock bound of one request
    :param transport_kwargs: passed to ``httpx.HTTPTransport`` (``verify``, ``limits``, ...)
    """

    def __init__(self, seconds: float, **transport_kwargs: Any) -> None:
        self.seconds = seconds
        self._inner = with_deadlines(httpx.HTTPTransport(**transport_kwargs), DeadlineBackend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.seconds
        with Deadline(deadline):
            response = self._inner.handle_request(request)
        return httpx.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                              stream=_DeadlineBody(response.stream, deadline))

    def close(self) -> None:
        self._inner.close()


# ---- transport failures -----------------------------------------------------------------------
#: resolver answers that mean "this name does not exist" (a typo), not "try again later"
_NO_SUCH_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


#: transport failures before any byte of the request left this host
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _resolver_failure(exc: BaseException) -> socket.gaierror | None:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx.ConnectError <- httpcore.ConnectError <- socket.gaierror
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def transport_error(exc: httpx.HTTPError, call: Any, timeout: float) -> SalesforceOAuthError:
    """The package's error for an httpx failure of ``call`` (a :class:`~.oauth.Call`: its ``url``,
    ``describe`` and ``login_host`` are read). It keeps nothing of ``exc`` (whose request holds
    the form and headers): only type names and the host."""
    host = httpx.URL(call.url).host
    resolver = _resolver_failure(exc)
    if resolver is not None and resolver.errno in _NO_SUCH_NAME:
        where = "check 'host' for a typo" if call.login_host else "the instance URL Salesforce returned"
        return SalesforceHostError(
            f"Salesforce {call.describe}: could not resolve {host!r} (no such host name)",
            hint=f"{where}; the name must resolve from this worker (DNS, /etc/hosts, VPN)",
        )
    if resolver is not None:
        what = f"could not resolve {host!r} for now (the resolver failed)"
    elif isinstance(exc, httpx.TimeoutException):
        what = f"no answer within {timeout:g} s from {host!r} ({type(exc).__name__})"
    else:
        what = f"connection failed to {host!r} ({type(exc).__name__})"
    error = SalesforceConnectionError(
        f"Salesforce {call.describe}: {what}",
        hint="a network problem or an outage; retried automatically. Check 'host' if it persists",
    )
    # only a connection that was never made proves Salesforce did not see the request
    error.request_sent = not (resolver is not None or isinstance(exc, _NOT_SENT))
    return error


