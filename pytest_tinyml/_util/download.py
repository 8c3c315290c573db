"""The one bounded, verified HTTP(S) download (datasets and the pinned TFLM sources).

:func:`download` fetches one URL into a file:

- **bounded**: at most ``max_bytes`` (a larger ``Content-Length`` is refused before reading), every read
  within ``read_timeout`` seconds and the whole download within ``deadline`` seconds (a server dripping a
  byte at a time, in its body or in its status line and headers, ends at the deadline: a watchdog shuts
  the download's sockets down then);
- **verified**: an optional ``(algorithm, hex digest)`` the file must have, and a body as long as the
  ``Content-Length`` it announced;
- **atomic**: written into a temporary file next to ``dest`` and renamed into place only when complete
  and verified; a failed download leaves nothing behind;
- **redirects**: at most :data:`MAX_REDIRECTS`, and only to the same trust level as the URL asked for:
  from ``https`` only to ``https``; from ``http`` on a loopback host only to ``http`` on that same host;
  from other ``http`` only to ``http(s)``; never to another scheme. A refused redirect names its target;
- **progress by time**: every ``progress_every`` seconds, a line with the bytes so far and the rate.

Every failure is a :class:`DownloadError` with a one-line ``reason`` (HTTP errors, refused connections,
timeouts, a server that does not speak HTTP, a malformed URL or port): callers wrap it in their own
message and never show a traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pytest_tinyml._util.cachefs import publish, staged_file

MAX_REDIRECTS = 4
READ_TIMEOUT = 60.0  # seconds without a byte before a download is abandoned
DEADLINE = 1800.0  # seconds for the whole download
PROGRESS_EVERY = 5.0  # seconds between progress lines
CHUNK = 1 << 16


class DownloadError(Exception):
    """A download failed; ``reason`` is one line, without the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HTTPStatusError(DownloadError):
    """The server answered with an HTTP error status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message or f"HTTP {code}")
        self.code = code


class TooLarge(DownloadError):
    """Over ``limit`` bytes: announced (``declared``) or sent (``declared`` None)."""

    def __init__(self, limit: int, declared: int | None) -> None:
        super().__init__(f"more than {limit:,} bytes" if declared is None else f"{declared:,} bytes announced, "
                         f"above the {limit:,}-byte limit")
        self.limit = limit
        self.declared = declared


class Truncated(DownloadError):
    """The body ended before the ``Content-Length`` it announced."""

    def __init__(self, got: int, expected: int) -> None:
        super().__init__(f"ended after {got:,} of {expected:,} bytes")
        self.got = got
        self.expected = expected


class DeadlineExceeded(DownloadError):
    """The whole download took longer than its total deadline (``seconds``); ``got`` bytes had arrived
    in ``elapsed`` seconds, when known."""

    def __init__(self, seconds: float, got: int | None = None, elapsed: float = 0.0) -> None:
        detail = f" ({got:,} bytes at {_rate(got, elapsed)})" if got is not None else ""
        super().__init__(f"not finished after {seconds:g} s{detail}: the total deadline")
        self.seconds = seconds


class ChecksumMismatch(DownloadError):
    def __init__(self, algorithm: str, actual: str) -> None:
        super().__init__(f"checksum mismatch ({algorithm} {actual})")
        self.algorithm = algorithm
        self.actual = actual


def _line(text: object, limit: int = 200) -> str:
    """``text`` on one line: control characters and runs of whitespace become one space; cut to ``limit``."""
    s = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def redirect_allowed(base: str, target: str) -> bool:
    """Whether a redirect from ``base`` to ``target`` stays at the trust level of ``base`` (module doc)."""
    old, new = urllib.parse.urlsplit(base), urllib.parse.urlsplit(target)
    if not new.hostname:
        return False
    if old.scheme == "https":
        return new.scheme == "https"
    if old.scheme == "http" and is_loopback(old.hostname or ""):
        return new.scheme == "http" and new.hostname == old.hostname
    return old.scheme == "http" and new.scheme in ("http", "https")


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def __init__(self, base: str) -> None:
        self.base = base

    def http_error_302(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                       headers: Any) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location:
            target = urllib.parse.urljoin(req.full_url, location)
            if not redirect_allowed(self.base, target):
                base = urllib.parse.urlsplit(self.base)
                raise DownloadError(f"refused redirect to {_line(target)} (HTTP {code}; only the trust level of "
                                    f"{base.scheme}://{base.netloc} is followed)")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Watchdog:
    """Ends the whole exchange at the deadline: a server that drips its status line or headers (which
    ``urlopen`` reads before :func:`download` sees a byte) is cut off too. Every socket opened for the
    download is tracked; when the timer fires they are shut down, which ends a blocked read at once."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def _cut(self, sock: socket.socket) -> None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, under any TLS layer
        except OSError:
            pass

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                self._cut(sock)

    def track(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                self._cut(sock)

    def tracked(self, base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        dog = self

        class Connection(base):  # type: ignore[misc,valid-type]
            def connect(self) -> None:
                super().connect()
                dog.track(self.sock)

        return Connection

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, dog: _Watchdog) -> None:
        super().__init__()
        self.dog = dog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.dog.tracked(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, dog: _Watchdog) -> None:
        super().__init__()
        self.dog = dog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.dog.tracked(http.client.HTTPSConnection), req)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.InvalidURL):
        return f"invalid URL ({_line(exc)})"
    if isinstance(exc, http.client.BadStatusLine):
        return f"the server does not answer HTTP ({type(exc).__name__}: {_line(exc, 80)})"
    if isinstance(exc, http.client.HTTPException):
        return f"{type(exc).__name__}: {_line(exc)}" if str(exc) else type(exc).__name__
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return _reason(inner)
        return _line(inner)
    if isinstance(exc, TimeoutError):
        return _line(exc) or "timed out"
    return _line(exc) or type(exc).__name__


def _late(deadline: float) -> DeadlineExceeded:
    return DeadlineExceeded(deadline)


def _rate(n: int, seconds: float) -> str:
    return f"{n / 1e6 / max(seconds, 1e-9):.1f} MB/s"


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    digest: tuple[str, str] | None = None,
    read_timeout: float = READ_TIMEOUT,
    deadline: float = DEADLINE,
    progress: Callable[[str], None] | None = None,
    label: str = "",
    progress_every: float = PROGRESS_EVERY,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Fetch ``url`` into ``dest`` (module doc); returns the number of bytes. Raises :class:`DownloadError`.

    ``progress`` receives ``tinyml: downloading <label>: <MB>[ of <MB>] (<rate>)`` every ``progress_every``
    seconds while bytes arrive."""
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as exc:
        raise DownloadError(f"invalid URL ({_line(exc)})") from None
    if scheme not in ("http", "https"):
        raise DownloadError(f"not an http(s) URL (scheme {scheme or 'missing'!r})")
    start = clock()
    dog = _Watchdog(deadline)
    opener = urllib.request.build_opener(_RedirectPolicy(url), _HTTPHandler(dog), _HTTPSHandler(dog))
    try:
        with dog, opener.open(url, timeout=min(read_timeout, deadline)) as resp:
            length = int(resp.headers.get("Content-Length") or 0)
            if length > max_bytes:
                raise TooLarge(max_bytes, length)
            h = hashlib.new(digest[0]) if digest is not None else None
            got = 0
            last = start
            with staged_file(dest, prefix=f".{dest.name}.") as (out, tmp):
                while True:
                    try:
                        chunk = resp.read1(CHUNK)
                    except http.client.IncompleteRead as exc:
                        if dog.fired:
                            raise _late(deadline) from None
                        raise Truncated(got + len(exc.partial), length or got + len(exc.partial)) from None
                    if not chunk:
                        if dog.fired:  # the watchdog ended the read: not the end of the body
                            raise _late(deadline)
                        break
                    got += len(chunk)
                    if got > max_bytes:
                        raise TooLarge(max_bytes, None)
                    out.write(chunk)
                    if h is not None:
                        h.update(chunk)
                    now = clock()
                    if now - start > deadline:
                        raise DeadlineExceeded(deadline, got, now - start)
                    if progress is not None and now - last >= progress_every:
                        last = now
                        total = f" of {length / 1e6:.1f} MB" if length else ""
                        progress(f"tinyml: downloading {label}: {got / 1e6:.1f} MB{total} ({_rate(got, now - start)})")
                if length and got != length:
                    raise Truncated(got, length)
                if h is not None and digest is not None and h.hexdigest() != digest[1]:
                    raise ChecksumMismatch(digest[0], h.hexdigest())
                out.close()
                publish(tmp, dest)
            return got
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if dog.fired:
            raise _late(deadline) from None
        if isinstance(exc, urllib.error.HTTPError):
            raise HTTPStatusError(exc.code, _line(exc.reason)) from None
        raise DownloadError(_reason(exc)) from None


__all__ = [
    "ChecksumMismatch",
    "DownloadError",
    "HTTPStatusError",
    "TooLarge",
    "Truncated",
    "download",
    "is_loopback",
    "redirect_allowed",
]
