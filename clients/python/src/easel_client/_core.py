"""What the sync and async clients share: configuration, the description of one call, the retry
policy (tenacity), response handling, upload inputs and the SSE id-reset watch.

Only the sending differs between `Easel` and `AsyncEasel`; everything decided about a request
(its URL, headers, body, whether it may be sent twice) is decided here, once.
"""

from __future__ import annotations

import os
import platform
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, stop_after_attempt, wait_exponential_jitter

from easel_client._version import __version__
from easel_client.errors import APIConnectionError, EaselError, error_from_response, retry_after_seconds

T = TypeVar("T")

Service = Literal["api", "assets"]
Auth = Literal["key", "admin", "none"]
FileInput = str | os.PathLike[str] | bytes | IO[bytes]

#: Statuses that say "not done, come back later": Easel answers 429 before running a request and
#: 503 only when nothing was changed (API.md), so these are retried for every call.
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_API_URL = "http://127.0.0.1:8000"
USER_AGENT = f"easel-client/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"


class NotGiven:
    """Marks an argument left out (a PATCH field not sent), as opposed to an explicit None."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried on 429, 503 and connection failures.

    `attempts` counts the first try. Waits grow exponentially with jitter from `backoff` up to
    `max_backoff`, unless the server sent `Retry-After`, which is honoured; an answer asking to
    wait longer than `max_retry_after` is raised at once (as `RateLimited` / `ServiceUnavailable`
    with `retry_after` set) rather than blocking the caller that long."""

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical API call: built once, sent once or more (retries send the very same request,
    so a generation's `Idempotency-Key` is the same on every attempt)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    service: Service = "api"
    auth: Auth = "key"
    json: Any = None
    params: Mapping[str, Any] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: May this request be sent again when its answer was lost (the server may have acted on
    #: it)? True for idempotent methods and for POSTs carrying an Idempotency-Key.
    replay_safe: bool = False
    #: A redirect (302) is this call's answer, not an error.
    redirect: bool = False
    #: An absolute URL, used instead of `service` + `path`.
    url: str | None = None


def query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def body(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that were given (NOT_GIVEN ones are left out; None is sent)."""
    return {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}


def safe_to_replay(call: Call[Any], exc: BaseException) -> bool:
    """Whether a failed attempt may be sent again."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True  # the request never left: no server can have acted on it
    if isinstance(exc, httpx.TransportError):
        return call.replay_safe  # sent, answer lost: only an idempotent request may go again
    return False


class Config:
    """Addresses, credentials and policy, shared by the sync and async clients."""

    def __init__(self, base_url: str | None, *, api_key: str | None, admin_token: str | None,
                 assets_url: str | None, retry: RetryPolicy | None) -> None:
        self.api_url = (base_url or os.environ.get("EASEL_API_URL") or DEFAULT_API_URL).rstrip("/")
        # Behind the production ingress `/v1/assets` is routed to the assets service on the same
        # host, so the api's address is the right default; `make run` serves it on :8001.
        self.assets_url = (assets_url or os.environ.get("EASEL_ASSETS_URL") or self.api_url).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("EASEL_API_KEY")
        self.admin_token = admin_token if admin_token is not None else os.environ.get("EASEL_ADMIN_TOKEN")
        self.retry = retry or RetryPolicy()

    def replace(self, **changes: Any) -> Config:
        clone = object.__new__(Config)
        clone.__dict__.update(self.__dict__, **changes)
        return clone

    def url(self, service: Service, path: str) -> str:
        return (self.api_url if service == "api" else self.assets_url) + path

    def auth_headers(self, auth: Auth) -> dict[str, str]:
        if auth == "none":
            return {}
        token = self.admin_token if auth == "admin" else self.api_key
        if not token:
            what = "an admin_token" if auth == "admin" else "an api_key"
            raise EaselError(f"This call needs {what}; pass it to the client.", code="missing_credentials")
        return {"Authorization": f"Bearer {token}"}

    def is_own_url(self, url: str) -> bool:
        """Whether `url` points at the api or assets service (and may carry the API key)."""
        origin = _origin(url)
        return origin in (_origin(self.api_url), _origin(self.assets_url))

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any],
              timeout: httpx.Timeout | None = None) -> httpx.Request:
        headers = {**self.auth_headers(call.auth), **call.headers}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        url = call.url or self.url(call.service, call.path)
        return http.build_request(call.method, url, params=call.params,
                                  json=call.json, files=call.files, headers=headers, **extra)

    # -- the retry policy, as tenacity arguments -----------------------------------------------

    def retrying_kwargs(self, call: Call[Any]) -> dict[str, Any]:
        policy = self.retry
        backoff = wait_exponential_jitter(multiplier=policy.backoff, max=policy.max_backoff, jitter=policy.backoff)

        def should_retry(state: RetryCallState) -> bool:
            outcome = state.outcome
            if outcome is None:
                return False
            if outcome.failed:
                exc = outcome.exception()
                return exc is not None and safe_to_replay(call, exc)
            response: httpx.Response = outcome.result()
            if response.status_code not in RETRY_STATUSES:
                return False
            wait = retry_after_seconds(response)
            return wait is None or wait <= policy.max_retry_after

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                seconds = retry_after_seconds(outcome.result())
                if seconds is not None:
                    return seconds
            return float(backoff(state))

        def give_up(state: RetryCallState) -> Any:
            assert state.outcome is not None
            return state.outcome.result()  # the last answer, or the last exception raised again

        return {"stop": stop_after_attempt(max(1, policy.attempts)), "wait": wait, "retry": should_retry,
                "retry_error_callback": give_up}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def finish(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or the error it carries, raised."""
    if response.is_success or (call.redirect and response.status_code in (301, 302, 303, 307, 308)):
        return call.parse(response)
    raise error_from_response(response)


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
    return APIConnectionError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, code=code)


def location(response: httpx.Response) -> str:
    """Where a 302 points (made absolute against the request's URL)."""
    target = response.headers.get("location")
    if not target:
        raise EaselError("The redirect carries no Location.", code="bad_redirect", status=response.status_code)
    return str(response.request.url.join(target))


def upload_part(file: FileInput, filename: str | None, content_type: str | None) -> tuple[str, bytes, str]:
    """The multipart `file` field. The bytes are read once (uploads are at most 10 MiB), so a
    retried attempt sends exactly the same body."""
    if isinstance(file, bytes | bytearray | memoryview):
        data, name = bytes(file), "upload"
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        data, name = path.read_bytes(), path.name
    else:
        raw = file.read()
        data, name = bytes(raw), Path(str(getattr(file, "name", "") or "upload")).name
    # The server judges the format by content; the declared type is only a courtesy.
    return filename or name, data, content_type or "application/octet-stream"


def write_atomically(target: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The final path and a temporary sibling to stream into (renamed once complete)."""
    path = Path(target)
    return path, path.with_name(f".{path.name}.part")


# -- live events -------------------------------------------------------------------------------


class IdResetWatch:
    """Notices an SSE frame that clears the last event id (`id` with an empty value).

    Easel sends one just before ending a stream whose events may have been lost (a Redis
    failure): the reconnect must then go without `Last-Event-ID` to get a fresh snapshot.
    httpx-sse 0.4.3 dispatches nothing for such a frame, so its bytes are watched on the way
    in. Only the first bytes of a line can matter, so long data lines are never buffered."""

    _KEEP = 8

    def __init__(self) -> None:
        self.reset = False
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()[: self._KEEP]
        for line in lines:
            line = line.rstrip(b"\r")
            if line == b"id" or line.startswith(b"id:"):
                self.reset = line[3:].lstrip(b" ") == b""
        return chunk

    def tap(self, response: httpx.Response) -> httpx.Response:
        return httpx.Response(response.status_code, headers=_sse_headers(response), request=response.request,
                              content=(self.feed(chunk) for chunk in response.iter_bytes()))

    def atap(self, response: httpx.Response) -> httpx.Response:
        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in response.aiter_bytes():
                yield self.feed(chunk)

        return httpx.Response(response.status_code, headers=_sse_headers(response), request=response.request,
                              content=chunks())


def _sse_headers(response: httpx.Response) -> dict[str, str]:
    # The bytes are already decoded (gzip etc.): only the type travels on.
    return {"content-type": response.headers.get("content-type", "")}


def events_call(board_id: str, last_event_id: str | None) -> Call[None]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return Call("GET", f"/v1/boards/{board_id}/events", parse=lambda _r: None, headers=headers, replay_safe=True)


#: The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
STREAM_IDLE_SECONDS = 45.0


def reconnect_delay(policy: RetryPolicy, failures: int, server_retry_ms: int | None) -> float:
    """Before reconnecting: none after a stream that delivered events, then growing."""
    if failures <= 1:
        return 0.0
    if server_retry_ms is not None:
        return server_retry_ms / 1000
    return float(min(policy.max_backoff, policy.backoff * 2 ** (failures - 2)))
