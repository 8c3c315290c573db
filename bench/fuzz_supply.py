"""Issue-19 hostile-input classes for bench_fuzz.py: the download path, the source cache and file names.

Every case runs in its own Python process (``python bench/fuzz_supply.py --case CLASS CASE WORKDIR``) so that a
hang is killed at its time bound and the peak RSS is the case's own (its VmHWM, and ``ru_maxrss`` of its
children for the pytest runs; ``wait4``'s for a case killed at its bound; for ``archive`` the peak is
reset after the archive is written, so it is the unpacking's). The case prints one JSON line:
``ok``, ``crash`` (an unexpected exception or a message that is not one line) or ``silent_pass`` (accepted
where it must be refused, or a connection attempted to a non-loopback address). No exit / no JSON line is a
crash, over the bound a hang.

Network: servers listen on 127.0.0.1 only, and each case process installs a socket guard first: a
``connect`` to any non-loopback address, or a name lookup of anything but ``localhost`` and literal
addresses, is refused and recorded (and turns the case into a silent pass). The redirect targets
``http://10.255.255.1/`` are therefore never connected to; the refusal message of the client must name them.

Classes: ``redirect`` (301/302/307/308 to ftp://, to 10.255.255.1, to another loopback host, loops, chains
over the limit, same-host chains that must be followed; on ``download`` and on ``locate_sources`` with a
127.0.0.1 mirror), ``drip`` (a byte every 0.25 s in the body or the headers, silence, a close mid-body,
non-HTTP servers, bad ports; small read timeouts and deadlines), ``archive`` (GNU long-name / long-link /
pax records claiming 512 MiB, pax size bombs, 100,000 directories, 300,000 symlinks, devices and FIFOs,
``..`` and absolute members, members written twice, over the file and byte limits; ``safe_unpack``, and
nothing may be left in or outside the destination), ``tamper`` (a verified source-cache entry given a
symlinked .cc, a directory, a file, an edited kernel, a FIFO...: refused on the next run, and in the same
run never compiled), ``names`` (model and spec file names with ESC, OSC 8, CR, LF, BEL, C1 CSI, RLO through
``pytest --tinyml-model/--tinyml-spec ... --junitxml --tinyml-report -m "not firmware"``: no raw control
character in the terminal output, report.md or report.html, and the JUnit XML parses).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# python bench/fuzz_supply.py [-v] [CLASS...]   # these classes alone (bench_fuzz.py --only supply: all five)
REPO = Path(__file__).resolve().parents[1]

CLASSES = ("redirect", "drip", "archive", "tamper", "names")
BOUND = {"redirect": 30.0, "drip": 20.0, "archive": 90.0, "tamper": 30.0, "names": 180.0}

# --- the socket guard (installed in every case process before anything connects) ---------------------
ATTEMPTS: list[str] = []


def _loopback(host: str) -> bool:
    if host in ("", "0.0.0.0", "::"):  # the wildcard address: this machine
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install_guard() -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            if not _loopback(host):
                ATTEMPTS.append(host)
                raise ConnectionRefusedError(f"bench guard: no connection to {host}")

    def connect(self: socket.socket, address: object) -> None:
        check(self, address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(self, address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if host is not None and name not in ("localhost", ""):
            try:
                ipaddress.ip_address(name)
            except ValueError:
                ATTEMPTS.append(name)
                raise socket.gaierror(f"bench guard: no name lookup of {name}") from None
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


# --- a raw server on 127.0.0.1 ------------------------------------------------------------------------
Answer = Callable[[socket.socket, str], None]


class Server:
    """TCP on 127.0.0.1; each connection in its own thread runs ``answer(conn, path)`` after the request head
    (``path`` "" when ``read_request`` is False: the answer speaks first)."""

    def __init__(self, answer: Answer, read_request: bool = True) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []

        def handle(conn: socket.socket) -> None:
            with conn:
                try:
                    path = ""
                    if read_request:
                        head = b""
                        while b"\r\n\r\n" not in head and len(head) < 65536:
                            chunk = conn.recv(4096)
                            if not chunk:
                                return
                            head += chunk
                        parts = head.split(b" ", 2)
                        path = parts[1].decode("latin-1") if len(parts) > 2 else ""
                        self.requests.append(path)
                    answer(conn, path)
                except OSError:
                    pass

        def serve() -> None:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()


def routes(bodies: dict[str, bytes], redirects: dict[str, tuple[int, str]]) -> Answer:
    def answer(conn: socket.socket, path: str) -> None:
        if path in redirects:
            code, where = redirects[path]
            conn.sendall(f"HTTP/1.1 {code} Moved\r\nLocation: {where}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
        elif path in bodies:
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(bodies[path])}\r\nConnection: close\r\n\r\n"
                         .encode() + bodies[path])
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return answer


# --- case plumbing ------------------------------------------------------------------------------------
@dataclass
class Result:
    kind: str  # ok | crash | silent_pass
    detail: str = ""


def ok(detail: str = "") -> Result:
    return Result("ok", detail)


def one_line(exc: BaseException) -> Result | None:
    """A crash Result when the message of a handled error is not one line."""
    text = str(exc)
    if "\n" in text or "\r" in text or not text.strip():
        return Result("crash", f"{type(exc).__name__} not one line: {text[:300]!r}")
    if "Traceback" in text:
        return Result("crash", f"traceback in message: {text[:300]!r}")
    return None


CaseFn = Callable[[Path], Result]
CASES: dict[str, dict[str, CaseFn]] = {c: {} for c in CLASSES}


def case(cls: str, name: str) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        CASES[cls][name] = fn
        return fn

    return deco


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- redirect -----------------------------------------------------------------------------------------
BODY = b"0123456789" * 100


def _download(url: str, dest: Path, **kw: float) -> object:
    from pytest_tinyml._util.download import download

    return download(url, dest, max_bytes=1 << 20, read_timeout=kw.get("read_timeout", 5.0),
                    deadline=kw.get("deadline", 10.0))


def _expect_refused(url: str, work: Path, must_name: str | None, words: str = "", **kw: float) -> Result:
    from pytest_tinyml._util.download import DownloadError

    dest = work / "out" / "file.bin"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, dest, **kw)
    except DownloadError as exc:
        bad = one_line(exc)
        if bad:
            return bad
        if must_name and must_name not in exc.reason:
            return Result("silent_pass", f"refusal does not name {must_name}: {exc.reason}")
        if words and words not in exc.reason:
            return Result("silent_pass", f"expected {words!r} in: {exc.reason}")
        if leftovers(dest.parent):
            return Result("silent_pass", f"left behind: {leftovers(dest.parent)}")
        return ok(exc.reason[:120])
    return Result("silent_pass", f"downloaded {dest.stat().st_size} bytes")


def _expect_followed(url: str, work: Path) -> Result:
    dest = work / "out" / "file.bin"
    dest.parent.mkdir(parents=True, exist_ok=True)
    _download(url, dest)
    if dest.read_bytes() != BODY:
        return Result("silent_pass", "wrong body")
    return ok()


OFF_HOST = "http://10.255.255.1/x.tar.gz"

for _code in (301, 302, 307, 308):
    def _off(work: Path, code: int = _code) -> Result:
        srv = Server(routes({}, {"/a": (code, OFF_HOST)}))
        return _expect_refused(srv.url + "/a", work, "refused redirect to http://10.255.255.1/x.tar.gz")

    def _ftp(work: Path, code: int = _code) -> Result:
        srv = Server(routes({}, {"/a": (code, "ftp://127.0.0.1/x.tar.gz")}))
        return _expect_refused(srv.url + "/a", work, "refused redirect to ftp://127.0.0.1/x.tar.gz")

    def _same(work: Path, code: int = _code) -> Result:
        srv = Server(routes({"/b": BODY}, {"/a": (code, "/b")}))
        return _expect_followed(srv.url + "/a", work)

    case("redirect", f"off_host_{_code}")(_off)
    case("redirect", f"ftp_{_code}")(_ftp)
    case("redirect", f"same_host_relative_{_code}")(_same)


@case("redirect", "off_host_https")
def _off_https(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "https://10.255.255.1/x")}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to https://10.255.255.1/x")


@case("redirect", "other_loopback_host")
def _other_loopback(work: Path) -> Result:
    srv = Server(routes({"/b": BODY}, {"/a": (302, "http://127.0.0.2/b")}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to http://127.0.0.2/b")


@case("redirect", "named_host")
def _named(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "http://evil.example/x")}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to http://evil.example/x")


@case("redirect", "file_scheme")
def _file(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "file:///etc/passwd")}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to file:///etc/passwd")


@case("redirect", "second_hop_off_host")
def _second_hop(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (301, "/b"), "/b": (307, OFF_HOST)}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to http://10.255.255.1/x.tar.gz")


@case("redirect", "loop_self")
def _loop(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "/a")}))
    return _expect_refused(srv.url + "/a", work, None)


@case("redirect", "loop_two")
def _loop2(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "/b"), "/b": (301, "/a")}))
    return _expect_refused(srv.url + "/a", work, None)


@case("redirect", "chain_over_limit")
def _chain_long(work: Path) -> Result:
    from pytest_tinyml._util.download import MAX_REDIRECTS

    n = MAX_REDIRECTS + 6
    srv = Server(routes({f"/r{n}": BODY}, {f"/r{i}": (302, f"/r{i + 1}") for i in range(n)}))
    got = _expect_refused(srv.url + "/r0", work, None)
    if got.kind == "ok" and len(srv.requests) > MAX_REDIRECTS + 2:
        return Result("silent_pass", f"{len(srv.requests)} requests for a limit of {MAX_REDIRECTS}")
    return got


@case("redirect", "chain_within_limit")
def _chain_short(work: Path) -> Result:
    srv = Server(routes({"/r3": BODY}, {f"/r{i}": (307, f"/r{i + 1}") for i in range(3)}))
    return _expect_followed(srv.url + "/r0", work)


@case("redirect", "same_host_absolute_other_port")
def _other_port(work: Path) -> Result:
    target = Server(routes({"/b": BODY}, {}))
    srv = Server(routes({}, {"/a": (302, f"http://127.0.0.1:{target.port}/b")}))
    return _expect_followed(srv.url + "/a", work)


@case("redirect", "location_with_control_chars")
def _ctl_location(work: Path) -> Result:
    srv = Server(routes({}, {"/a": (302, "http://10.255.255.1/\x1b[2J\x07x")}))
    return _expect_refused(srv.url + "/a", work, "refused redirect to http://10.255.255.1/")


# the TFLM mirror path: locate_sources with a mirror on 127.0.0.1 that redirects one project's archive
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TREE = {
    "README": b"hello\n",
    "include/x.h": b"#ifndef X_H\n#define X_H\n#endif\n",
    "tensorflow/lite/micro/micro_interpreter.cc": b"int i;\n",
    "tensorflow/lite/micro/kernels/add.cc": b"int add;\n",
    "tensorflow/lite/micro/kernels/conv.cc": b"int conv;\n",
    "tensorflow/lite/core/api/error_reporter.cc": b"int e;\n",
}


def write_tree(files: dict[str, bytes], root: Path) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def pin_table(work: Path) -> dict[str, object]:
    from pytest_tinyml.emulate import tflm_pins
    from pytest_tinyml.emulate import tflm_sources as ts

    digest, count = tflm_pins.tree_digest(write_tree(TREE, work / "ref"))
    return {n: ts.Pin(name=n, owner="own", repo=n, commit=COMMIT, sha256=digest, files=count)
            for n in ts.projects_for("reference")}


def targz(top: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _mirror_case(work: Path, redirect_to: str | None, code: int = 302, must_name: str | None = None) -> Result:
    from pytest_tinyml.emulate import tflm_sources as ts

    table = pin_table(work)
    bodies: dict[str, bytes] = {}
    redirects: dict[str, tuple[int, str]] = {}
    for name in table:
        path = f"/own/{name}/archive/{COMMIT}.tar.gz"
        body = targz(f"{name}-{COMMIT}", TREE)
        if name == "flatbuffers" and redirect_to is not None:
            redirects[path] = (code, redirect_to)
            bodies["/moved" + path] = body
        else:
            bodies[path] = body
    srv = Server(routes(bodies, redirects))
    cache = work / "cache"
    try:
        got = ts.locate_sources(cache, kernels="reference", mirror=srv.url, table=table,  # type: ignore[arg-type]
                                tflm_root="", deadline=10.0)
    except ts.SourcesUnavailable as exc:
        bad = one_line(exc)
        if bad:
            return bad
        dots = [n for n in leftovers(cache) if n.startswith(".")]
        if dots:
            return Result("silent_pass", f"left in the cache: {dots}")
        if must_name is None:
            return Result("crash", f"refused where it must be followed: {exc}")
        if must_name and must_name not in str(exc):
            return Result("silent_pass", f"refusal does not name {must_name}: {exc}")
        return ok(str(exc)[:120])
    if must_name:
        return Result("silent_pass", f"sources accepted from {got.origin}")
    return ok(got.origin)


case("redirect", "mirror_off_host")(lambda w: _mirror_case(w, OFF_HOST, 302, "refused redirect to " + OFF_HOST))
case("redirect", "mirror_ftp")(lambda w: _mirror_case(w, "ftp://127.0.0.1/x", 301, "refused redirect to ftp://"))
case("redirect", "mirror_loop")(lambda w: _mirror_case(w, f"/own/flatbuffers/archive/{COMMIT}.tar.gz", 307, "HTTP 307"))
case("redirect", "mirror_same_host")(lambda w: _mirror_case(w, f"/moved/own/flatbuffers/archive/{COMMIT}.tar.gz"))


# --- drip ---------------------------------------------------------------------------------------------
DRIP_EVERY = 0.25
READ_TIMEOUT = 1.5
DEADLINE = 3.0


def _timed_refusal(url: str, work: Path, limit: float, words: str = "") -> Result:
    t0 = time.monotonic()
    got = _expect_refused(url, work, None, words, read_timeout=READ_TIMEOUT, deadline=DEADLINE)
    took = time.monotonic() - t0
    if took > limit:
        return Result("silent_pass", f"took {took:.1f} s, bound {limit:g} s: {got.detail}")
    if got.kind == "ok":
        got.detail = f"{took:.1f} s: {got.detail}"
    return got


def _drip_body(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while True:
        conn.sendall(b"x")
        time.sleep(DRIP_EVERY)


def _drip_head(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while True:
        for ch in b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n":
            conn.sendall(bytes([ch]))
            time.sleep(DRIP_EVERY)


def _drip_status(conn: socket.socket, path: str) -> None:
    for ch in b"HTTP/1.1 200 OK" + b" " * 60000:
        conn.sendall(bytes([ch]))
        time.sleep(DRIP_EVERY)


def _silent(conn: socket.socket, path: str) -> None:
    time.sleep(60)


def _half_body(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + BODY[:500])


def _close_at_once(conn: socket.socket, path: str) -> None:
    return


def _ssh(conn: socket.socket, path: str) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")


def _garbage(conn: socket.socket, path: str) -> None:
    conn.sendall(bytes(range(256)) * 64)


def _long_line(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000 + b"\r\n\r\n")


def _many_headers(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000 + b"\r\n")


def _bad_length(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n" + BODY)


def _huge_length(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n" + BODY)


def _no_length_close(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + BODY[:300])


_BOUND = DEADLINE + READ_TIMEOUT + 2.0
for _name, _answer, _first, _bound, _words in (
    ("body_one_byte_every_0.25s", _drip_body, True, _BOUND, "total deadline"),
    ("headers_one_byte_every_0.25s", _drip_head, True, _BOUND, ""),
    ("status_line_one_byte_every_0.25s", _drip_status, True, _BOUND, ""),
    ("never_answers", _silent, True, READ_TIMEOUT + 2.0, ""),
    ("closes_mid_body", _half_body, True, _BOUND, "ended after"),
    ("closes_before_status", _close_at_once, True, _BOUND, ""),
    ("ssh_banner_first", _ssh, False, _BOUND, "does not answer HTTP"),
    ("binary_garbage", _garbage, True, _BOUND, ""),
    ("header_line_200kb", _long_line, True, _BOUND, ""),
    ("5000_headers", _many_headers, True, _BOUND, ""),
    ("negative_content_length", _bad_length, True, _BOUND, ""),
    ("20_digit_content_length", _huge_length, True, _BOUND, ""),
):
    def _drip_case(work: Path, answer: Answer = _answer, first: bool = _first, bound: float = _bound,
                   words: str = _words) -> Result:
        srv = Server(answer, read_request=first)
        return _timed_refusal(srv.url + "/x", work, bound, words)

    case("drip", _name)(_drip_case)


def _tls_drip(conn: socket.socket, path: str) -> None:
    conn.sendall(b"\x16\x03\x03\x40\x00")  # a TLS handshake record that promises 16 KB, then a byte at a time
    while True:
        conn.sendall(b"\x02")
        time.sleep(DRIP_EVERY)


case("drip", "tls_handshake_one_byte_every_0.25s")(
    lambda w: _timed_refusal(f"https://127.0.0.1:{Server(_tls_drip, read_request=False).port}/x", w, _BOUND))
case("drip", "https_to_a_plain_http_server")(
    lambda w: _timed_refusal(f"https://127.0.0.1:{Server(routes({'/x': BODY}, {})).port}/x", w, _BOUND))


@case("drip", "no_length_close_with_digest")
def _no_length(work: Path) -> Result:
    from pytest_tinyml._util.download import DownloadError, download

    srv = Server(_no_length_close)
    dest = work / "f"
    try:
        download(srv.url + "/x", dest, max_bytes=1 << 20, digest=("sha256", "0" * 64), read_timeout=READ_TIMEOUT,
                 deadline=DEADLINE)
    except DownloadError as exc:
        return one_line(exc) or (Result("silent_pass", "file left") if dest.exists() else ok(exc.reason[:100]))
    return Result("silent_pass", "a truncated body without length passed its digest")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


for _name, _url in (("closed_port", "http://127.0.0.1:{free}/x"), ("port_99999", "http://127.0.0.1:99999/x"),
                    ("port_abc", "http://127.0.0.1:abc/x"), ("port_0", "http://127.0.0.1:0/x"),
                    ("port_negative", "http://127.0.0.1:-1/x"), ("empty_host", "http://:80/x"),
                    ("ipv6_unclosed", "http://[::1/x"), ("scheme_ftp", "ftp://127.0.0.1/x"),
                    ("scheme_file", "file:///etc/passwd"), ("space_in_host", "http://127.0.0.1 x/")):
    def _port_case(work: Path, url: str = _url) -> Result:
        return _timed_refusal(url.format(free=_free_port()), work, _BOUND)

    case("drip", _name)(_port_case)


def _mirror_fails(work: Path, mirror: str, bound: float) -> Result:
    from pytest_tinyml.emulate import tflm_sources as ts

    t0 = time.monotonic()
    try:
        ts.locate_sources(work / "cache", kernels="reference", mirror=mirror, table=pin_table(work),  # type: ignore[arg-type]
                          tflm_root="", deadline=DEADLINE)
    except ts.SourcesUnavailable as exc:
        took = time.monotonic() - t0
        if took > bound:
            return Result("silent_pass", f"took {took:.1f} s")
        dots = [n for n in leftovers(work / "cache") if n.startswith(".")]
        return one_line(exc) or (Result("silent_pass", f"left {dots}") if dots else ok(f"{took:.1f} s: {str(exc)[:100]}"))
    return Result("silent_pass", "sources accepted")


case("drip", "mirror_drip_body")(lambda w: _mirror_fails(w, Server(_drip_body).url, 4 * _BOUND))
case("drip", "mirror_drip_headers")(lambda w: _mirror_fails(w, Server(_drip_head).url, 4 * _BOUND))
case("drip", "mirror_ssh")(lambda w: _mirror_fails(w, Server(_ssh, read_request=False).url, _BOUND))
case("drip", "mirror_port_abc")(lambda w: _mirror_fails(w, "http://127.0.0.1:abc", _BOUND))
case("drip", "mirror_ipv6_unclosed")(lambda w: _mirror_fails(w, "http://[::1", _BOUND))
case("drip", "mirror_closed_port")(lambda w: _mirror_fails(w, f"http://127.0.0.1:{_free_port()}", _BOUND))


# --- archive ------------------------------------------------------------------------------------------
TOP = f"proj-{COMMIT}"


def header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> bytes:
    """One ustar header block, by hand (fast enough for 300,000 of them)."""
    block = bytearray(512)
    raw = name.encode()[:100]
    block[: len(raw)] = raw
    block[100:108] = b"0000644\0"
    block[108:124] = b"0000000\0" * 2
    block[124:136] = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    block[136:148] = b"00000000000\0"
    block[148:156] = b" " * 8
    block[156:157] = kind
    link = linkname.encode()[:100]
    block[157 : 157 + len(link)] = link
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def member(name: str, data: bytes = b"") -> Iterator[bytes]:
    yield header(name, size=len(data))
    if data:
        yield data + bytes(-len(data) % 512)


def pax(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> Iterator[bytes]:
    body = b""
    for k, v in records.items():
        rec = f" {k}={v}\n".encode()
        n = len(rec) + 1
        while n != len(rec) + len(str(n)):
            n = len(rec) + len(str(n))
        body += str(n).encode() + rec
    yield header("pax", kind, len(body))
    yield body + bytes(-len(body) % 512)


def gz(chunks: Iterator[bytes] | list[bytes], path: Path) -> Path:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(packer.compress(chunk))
        out.write(packer.compress(bytes(1024)) + packer.flush())
    return path


def zeros(n: int) -> Iterator[bytes]:
    block = bytes(1 << 20)
    while n > 0:
        yield block[: min(n, len(block))]
        n -= len(block)


def _unpack_case(work: Path, chunks: Callable[[], Iterator[bytes]], refused: str | None,
                 check: Callable[[Path], str] | None = None, limits: dict[str, int] | None = None) -> Result:
    """``refused``: words the one-line refusal must hold (None: the archive must be accepted, and ``check``
    of the destination must return "")."""
    from pytest_tinyml.emulate import tflm_fetch

    for k, v in (limits or {}).items():
        setattr(tflm_fetch, k, v)
    archive = gz(chunks(), work / "a.tar.gz")
    outside = work / "outside"
    outside.mkdir()
    dest = outside / "dest"
    before = {p.name for p in work.iterdir()}
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on: the unpacking's, not the writing's
    except OSError:
        pass
    t0 = time.monotonic()
    try:
        n = tflm_fetch.safe_unpack(archive, dest, "proj")
    except tflm_fetch.SourcesUnavailable as exc:
        took = time.monotonic() - t0
        bad = one_line(exc)
        if bad:
            return bad
        if dest.exists() or leftovers(outside) or {p.name for p in work.iterdir()} != before:
            return Result("silent_pass", f"left behind: {leftovers(outside)} {sorted(p.name for p in work.iterdir())}")
        if refused is None:
            return Result("crash", f"a good archive was refused: {exc}")
        if refused not in str(exc):
            return Result("silent_pass", f"refused, but not for {refused!r}: {exc}")
        return ok(f"{took:.1f} s: {str(exc)[:110]}")
    if refused is not None:
        return Result("silent_pass", f"accepted ({n} files) where it must be refused for {refused!r}")
    odd = [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())]
    if odd:
        return Result("silent_pass", f"non-regular entries created: {odd[:5]}")
    if leftovers(outside) != ["dest"]:
        return Result("silent_pass", f"written outside the destination: {leftovers(outside)}")
    problem = check(dest) if check else ""
    return Result("silent_pass", problem) if problem else ok(f"{n} files")


def _cases_archive() -> None:
    big = 512 << 20
    for kind, label in ((tarfile.GNUTYPE_LONGNAME, "gnu_longname"), (tarfile.GNUTYPE_LONGLINK, "gnu_longlink"),
                        (tarfile.XHDTYPE, "pax_header"), (tarfile.XGLTYPE, "pax_global")):
        def _huge(work: Path, kind: bytes = kind) -> Result:
            return _unpack_case(work, lambda: iter([header("././@LongLink", kind, big), *zeros(big),
                                                    header(f"{TOP}/README")]), "above the 65,536-byte bound")

        def _just_over(work: Path, kind: bytes = kind) -> Result:
            return _unpack_case(work, lambda: iter([header("././@LongLink", kind, 65537), *zeros(65537 + 511),
                                                    header(f"{TOP}/README")]), "65,536-byte bound")

        def _claim_only(work: Path, kind: bytes = kind) -> Result:  # claims 8 GiB, holds nothing
            return _unpack_case(work, lambda: iter([header("././@LongLink", kind, 8 << 30)]), "")

        case("archive", f"{label}_512MiB_real")(_huge)
        case("archive", f"{label}_65537B")(_just_over)
        case("archive", f"{label}_claims_8GiB")(_claim_only)

    case("archive", "pax_size_8GiB")(lambda w: _unpack_case(
        w, lambda: iter([*pax({"size": str(8 << 30)}), header(f"{TOP}/big")]), "more than 50,000 files or"))
    case("archive", "pax_records_60KB_each_x2000")(lambda w: _unpack_case(
        w, lambda: (b for i in range(2000) for b in (*pax({"comment": "c" * 60_000}), *member(f"{TOP}/f{i}"))),
        "archive headers take more than", limits={"MAX_HEADERS_TOTAL": 16 << 20}))
    case("archive", "pax_10000_records")(lambda w: _unpack_case(
        w, lambda: iter([*pax({f"k{i}": "v" for i in range(10_000)}), *member(f"{TOP}/f")]), "65,536-byte bound"))
    case("archive", "pax_path_escape")(lambda w: _unpack_case(
        w, lambda: iter([*pax({"path": "../../evil"}), *member(f"{TOP}/f", b"x")]), "unsafe path"))
    case("archive", "pax_path_absolute")(lambda w: _unpack_case(
        w, lambda: iter([*pax({"path": "/tmp/evil-tinyml"}), *member(f"{TOP}/f", b"x")]), "unsafe path"))
    case("archive", "directories_100000")(lambda w: _unpack_case(
        w, lambda: (header(f"{TOP}/d{i}/", tarfile.DIRTYPE) for i in range(100_000)),
        "more than 50,000 members"))
    case("archive", "nested_directories_100000")(lambda w: _unpack_case(
        w, lambda: (header(f"{TOP}/" + "d/" * min(i % 40 + 1, 40) + f"{i}/", tarfile.DIRTYPE)
                    for i in range(100_000)), "more than 50,000 members"))
    case("archive", "symlinks_300000")(lambda w: _unpack_case(
        w, lambda: (header(f"{TOP}/l{i}", tarfile.SYMTYPE, linkname="/etc/passwd") for i in range(300_000)),
        "more than 50,000 members"))
    for kind, label in ((tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hardlink"), (tarfile.CHRTYPE, "chardev"),
                        (tarfile.BLKTYPE, "blockdev"), (tarfile.FIFOTYPE, "fifo")):
        def _few(work: Path, kind: bytes = kind) -> Result:
            return _unpack_case(work, lambda: iter([*member(f"{TOP}/README", b"hi"),
                                                    *(header(f"{TOP}/src/m{i}.cc", kind, linkname="/etc/passwd")
                                                      for i in range(20)),
                                                    *member(f"{TOP}/src/a.cc", b"int a;")]), None,
                                lambda d: "" if sorted(p.name for p in d.rglob("*")) == ["README", "a.cc", "src"]
                                else f"tree: {sorted(p.name for p in d.rglob('*'))}")
        case("archive", f"{label}_x20_not_created")(_few)

        def _many(work: Path, kind: bytes = kind) -> Result:
            return _unpack_case(work, lambda: (header(f"{TOP}/m{i}", kind, linkname="x") for i in range(60_000)),
                                "more than 50,000 members")
        case("archive", f"{label}_x60000")(_many)
    case("archive", "symlink_then_file_through_it")(lambda w: _unpack_case(
        w, lambda: iter([header(f"{TOP}/sub", tarfile.SYMTYPE, linkname=str(w / "outside")),
                         *member(f"{TOP}/sub/evil.cc", b"int evil;")]), None,
        lambda d: "" if (d / "sub/evil.cc").is_file() and not (d / "sub").is_symlink() else "followed the link"))
    case("archive", "dotdot_member")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/../../evil", b"x")]), "unsafe path"))
    case("archive", "dotdot_second_member")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/README", b"x"), *member(f"{TOP}/a/../../../evil", b"x")]), "unsafe path"))
    case("archive", "absolute_member")(lambda w: _unpack_case(
        w, lambda: iter([*member("/tmp/tinyml-bench-evil", b"x")]), "unsafe path"))
    case("archive", "backslash_member")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}\\..\\evil", b"x")]), "unsafe path"))
    case("archive", "second_top_directory")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/README", b"x"), *member("other/README", b"x")]), "outside its top"))
    case("archive", "member_written_twice")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/README", b"one"), *member(f"{TOP}/README", b"two")]), "appears twice"))
    case("archive", "member_under_a_file")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/README", b"one"), *member(f"{TOP}/README/x", b"two")]), "appears twice"))
    case("archive", "file_over_a_directory")(lambda w: _unpack_case(
        w, lambda: iter([*member(f"{TOP}/d/x", b"one"), *member(f"{TOP}/d", b"two")]), "appears twice"))
    case("archive", "regular_file_claims_8GiB")(lambda w: _unpack_case(
        w, lambda: iter([header(f"{TOP}/big", size=8 << 30)]), "more than 50,000 files or"))
    case("archive", "files_50001")(lambda w: _unpack_case(
        w, lambda: (header(f"{TOP}/d{i // 1000}/f{i}") for i in range(50_001)), "more than 50,000"))
    case("archive", "bytes_over_limit_12x1MiB_limit_8MiB")(lambda w: _unpack_case(
        w, lambda: (b for i in range(12) for b in (header(f"{TOP}/f{i}", size=1 << 20), *zeros(1 << 20))),
        "more than 50,000 files or 8.4 MB", limits={"MAX_UNPACKED": 8 << 20}))
    case("archive", "sparse_member")(lambda w: _unpack_case(
        w, lambda: iter([header(f"{TOP}/s", tarfile.GNUTYPE_SPARSE, 512), bytes(512)]), "sparse file"))
    case("archive", "unknown_type")(lambda w: _unpack_case(
        w, lambda: iter([header(f"{TOP}/s", b"Z", 512), bytes(512)]), "unknown tar type"))
    case("archive", "truncated_member")(lambda w: _unpack_case(
        w, lambda: iter([header(f"{TOP}/s", size=10_000), b"x" * 700]), "truncated or not a tar.gz"))
    case("archive", "garbage_inside_gzip")(lambda w: _unpack_case(
        w, lambda: iter([bytes(range(256)) * 40]), "truncated or not a tar.gz"))
    case("archive", "good_small_tree")(lambda w: _unpack_case(
        w, lambda: (b for rel, data in TREE.items() for b in member(f"{TOP}/{rel}", data)), None,
        lambda d: "" if all((d / r).read_bytes() == v for r, v in TREE.items()) else "contents differ"))


@case("archive", "not_gzip")
def _not_gzip(work: Path) -> Result:
    from pytest_tinyml.emulate import tflm_fetch

    archive = work / "a.tar.gz"
    archive.write_bytes(b"PK\x03\x04" + bytes(2000))
    try:
        tflm_fetch.safe_unpack(archive, work / "dest", "proj")
    except tflm_fetch.SourcesUnavailable as exc:
        return one_line(exc) or (Result("silent_pass", "dest left") if (work / "dest").exists() else ok())
    return Result("silent_pass", "accepted")


_cases_archive()


# --- tamper -------------------------------------------------------------------------------------------
def _compiled(src: object) -> set[Path]:
    from pytest_tinyml.emulate.tflm_tree import tree_from_sources

    tree = tree_from_sources(src, "reference", "cortex-m4")  # type: ignore[arg-type]
    return set(tree.core_sources) | set(tree.kernel_sources) | set(tree.library_sources)


def _tamper_case(work: Path, tamper: Callable[[Path, Path], None], next_run_may_accept: bool = False,
                 addition: bool = True) -> Result:
    """Fill a cache with verified entries, verify, tamper with the tflite-micro entry, then: for an addition,
    the same run must compile nothing new (or refuse); the next run (a fresh check) must refuse the entry
    (or, for an addition that cannot be compiled, such as an empty directory, accept it and still compile
    nothing new). A file changed in place (edited, replaced by a link or FIFO, removed) is only judged on the
    next run: an entry is checked once per process, so within the run that verified it, it is as trusted as
    an edit of a kernel would be."""
    from pytest_tinyml.emulate import tflm_pins
    from pytest_tinyml.emulate import tflm_sources as ts

    table = pin_table(work)
    cache = work / "cache"
    for pin in table.values():
        write_tree(TREE, cache / pin.dirname)  # type: ignore[attr-defined]
    src = ts.locate_sources(cache, kernels="reference", offline=True, table=table, tflm_root="")  # type: ignore[arg-type]
    before = _compiled(src)
    entry = cache / table["tflite-micro"].dirname  # type: ignore[attr-defined]
    outside = write_tree({"evil.cc": b"int evil;\n"}, work / "outside")
    tamper(entry, outside)
    notes = []
    for run in ("same run", "next run") if addition else ("next run",):
        if run == "next run":
            tflm_pins._verified.cache_clear()
        try:
            again = ts.locate_sources(cache, kernels="reference", offline=True, table=table,  # type: ignore[arg-type]
                                      tflm_root="")
            after = _compiled(again)
        except ts.SourcesUnavailable as exc:
            bad = one_line(exc)
            if bad:
                return bad
            notes.append(f"{run}: refused")
            continue
        new = sorted(str(p.relative_to(cache)) for p in after - before)
        if new:
            return Result("silent_pass", f"{run}: compiles {new}")
        odd = [str(p) for p in after if p.is_symlink() or not p.is_file()]
        if odd:
            return Result("silent_pass", f"{run}: compiles non-regular {odd}")
        if run == "next run" and not next_run_may_accept:
            return Result("silent_pass", "next run: the tampered entry is accepted")
        notes.append(f"{run}: accepted, nothing new compiled")
    verdict = tflm_pins.check_entry(cache, table["tflite-micro"])  # type: ignore[arg-type]
    if not verdict.problem and not next_run_may_accept:
        return Result("silent_pass", "check_entry accepts the tampered entry")
    return ok("; ".join(notes))


K = "tensorflow/lite/micro/kernels"


def _t_symlink_cc(e: Path, o: Path) -> None:
    (e / K / "evil.cc").symlink_to(o / "evil.cc")


def _t_symlink_over_kernel(e: Path, o: Path) -> None:
    (e / K / "add.cc").unlink()
    (e / K / "add.cc").symlink_to(o / "evil.cc")


def _t_symlink_dir(e: Path, o: Path) -> None:
    (e / K / "extra").symlink_to(o)


def _t_symlink_top(e: Path, o: Path) -> None:
    (e / "evil.cc").symlink_to(o / "evil.cc")


def _t_dangling(e: Path, o: Path) -> None:
    (e / K / "gone.cc").symlink_to(o / "nothing-here.cc")


def _t_empty_dir(e: Path, o: Path) -> None:
    (e / K / "newdir").mkdir()


def _t_dir_cc(e: Path, o: Path) -> None:
    (e / K / "dir.cc").mkdir()


def _t_dir_with_cc(e: Path, o: Path) -> None:
    write_tree({"evil.cc": b"int evil;\n"}, e / K / "cmsis_nn")


def _t_file_kernel(e: Path, o: Path) -> None:
    (e / K / "evil.cc").write_bytes(b"int evil;\n")


def _t_file_core(e: Path, o: Path) -> None:
    (e / "tensorflow/lite/micro/evil.cc").write_bytes(b"int evil;\n")


def _t_file_c(e: Path, o: Path) -> None:
    (e / "tensorflow/lite/core/evil.c").write_bytes(b"int evil;\n")


def _t_file_top(e: Path, o: Path) -> None:
    (e / "NOTES").write_bytes(b"x")


def _t_sources_inc(e: Path, o: Path) -> None:
    write_tree({"tensorflow/lite/micro/tools/make/sources.inc":
                b"MICROLITE_CC_KERNEL_SRCS := \\\n$(TENSORFLOW_ROOT)tensorflow/lite/micro/kernels/evil.cc\n",
                f"{K}/evil.cc": b"int evil;\n"}, e)


def _t_edit(e: Path, o: Path) -> None:
    (e / K / "add.cc").write_bytes(b"int ev1;\n")  # same size


def _t_edit_keep_mtime(e: Path, o: Path) -> None:
    st = (e / K / "add.cc").stat()
    (e / K / "add.cc").write_bytes(b"int ev1;\n")
    os.utime(e / K / "add.cc", ns=(st.st_atime_ns, st.st_mtime_ns))


def _t_fifo(e: Path, o: Path) -> None:
    (e / K / "add.cc").unlink()
    os.mkfifo(e / K / "add.cc")


def _t_fifo_new(e: Path, o: Path) -> None:
    os.mkfifo(e / K / "evil.cc")


def _t_socket(e: Path, o: Path) -> None:
    here = os.getcwd()
    os.chdir(e / K)  # AF_UNIX paths are limited to 107 bytes
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind("sock.cc")
        s.close()
    finally:
        os.chdir(here)


def _t_remove(e: Path, o: Path) -> None:
    (e / K / "conv.cc").unlink()


def _t_entry_symlink(e: Path, o: Path) -> None:
    shutil.copytree(e, o / "copy")
    shutil.rmtree(e)
    e.symlink_to(o / "copy")


def _t_entry_file(e: Path, o: Path) -> None:
    shutil.rmtree(e)
    e.write_bytes(b"x")


def _t_unreadable(e: Path, o: Path) -> None:
    (e / K).chmod(0)


for _name, _fn, _may, _add in (
    ("symlinked_cc_in_kernels", _t_symlink_cc, False, True),
    ("kernel_replaced_by_symlink", _t_symlink_over_kernel, False, False),
    ("symlinked_directory", _t_symlink_dir, False, True), ("symlinked_cc_at_top", _t_symlink_top, False, True),
    ("dangling_symlink_cc", _t_dangling, False, True), ("empty_directory", _t_empty_dir, True, True),
    ("directory_named_x.cc", _t_dir_cc, True, True), ("directory_with_cc", _t_dir_with_cc, False, True),
    ("file_in_kernels", _t_file_kernel, False, True), ("file_in_core", _t_file_core, False, True),
    ("c_file_in_lite_core", _t_file_c, False, True), ("file_at_top", _t_file_top, False, True),
    ("sources_inc_naming_new_kernel", _t_sources_inc, False, True),
    ("kernel_edited_same_size", _t_edit, False, False), ("kernel_edited_mtime_restored", _t_edit_keep_mtime, False, False),
    ("kernel_replaced_by_fifo", _t_fifo, False, False), ("fifo_added", _t_fifo_new, False, True),
    ("socket_added", _t_socket, False, True), ("kernel_removed", _t_remove, False, False),
    ("entry_is_symlink_to_copy", _t_entry_symlink, False, False), ("entry_is_a_file", _t_entry_file, False, False),
    ("kernels_dir_mode_0", _t_unreadable, os.geteuid() == 0, False),  # root still reads it: accepted, unchanged
):
    def _t(work: Path, fn: Callable[[Path, Path], None] = _fn, may: bool = _may, add: bool = _add) -> Result:
        try:
            return _tamper_case(work, fn, may, add)
        finally:
            for p in work.rglob("*"):  # let the work dir be removed after the unreadable case
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)

    case("tamper", _name)(_t)


# --- names --------------------------------------------------------------------------------------------
HOSTILE = {
    "esc": "a\x1b[32mPASSED\x1b[0m",
    "osc8": "b\x1b]8;;http:evil\x07click\x1b]8;;\x07",
    "cr": "c\rPASSED ok",
    "lf": "d\nPASSED ok",
    "bel": "e\x07\x07",
    "c1_csi": "f\x9b31m",
    "rlo": "g\u202eexe.",
    "all": "h\x1b[2J\x1b]8;;x\x07y\x1b]8;;\x07\r\n\x07\x9b\u202e",
}


def _raw_controls(text: str) -> list[str]:
    return sorted({repr(ch) for ch in text if (unicodedata.category(ch) == "Cc" and ch not in "\n\t")
                   or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"})


def _names_case(work: Path, label: str, spec: bool) -> Result:
    import xml.etree.ElementTree as ET

    sys.path.insert(0, str(REPO / "tests"))
    import tflite_factory

    name = HOSTILE[label]
    model = f"{name}.tflite"
    (work / model).write_bytes(tflite_factory.int8_cnn(0))
    (work / "pytest.ini").write_text("[pytest]\n")
    if spec:
        spec_name = f"{name}.yaml"
        (work / spec_name).write_text("version: 1\nname: hostile\nmodel:\n  tflite: " + json.dumps(model) +
                                      "\nboard: stm32f405\nconstraints:\n  max_size: 50KiB\n  io_dtype: int8\n")
        target = ["--tinyml-spec", spec_name]
    else:
        target = ["--tinyml-model", model]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *target, "--junitxml", "j.xml",
           "--tinyml-report", "r", "-m", "not firmware", "-rA", "-o", f"tinyml_cache_dir={work / 'c'}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), TERM="xterm", PY_COLORS="0")
    proc = subprocess.run(cmd, cwd=work, capture_output=True, timeout=BOUND["names"] - 10, env=env)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if proc.returncode not in (0, 1):
        return Result("crash", f"pytest exit {proc.returncode}: {out[-800:]}")
    if "Traceback" in out or "INTERNALERROR" in out:
        return Result("crash", f"traceback: {out[-800:]}")
    problems = []
    if _raw_controls(out):
        problems.append(f"terminal output has {_raw_controls(out)}")
    for doc in ("report.md", "report.html"):
        path = work / "r" / doc
        if not path.is_file():
            problems.append(f"no {doc}")
        elif _raw_controls(path.read_text("utf-8", "replace")):
            problems.append(f"{doc} has {_raw_controls(path.read_text('utf-8', 'replace'))}")
    try:
        ET.parse(work / "j.xml")
    except (ET.ParseError, OSError) as exc:
        problems.append(f"JUnit XML does not parse: {exc}")
    if "passed" not in out and "failed" not in out:
        problems.append("nothing judged")
    if problems:
        return Result("silent_pass", "; ".join(problems))
    return ok(out.strip().splitlines()[-1][:100])


for _label in HOSTILE:
    case("names", f"model_{_label}")(lambda w, label=_label: _names_case(w, label, False))
    case("names", f"spec_{_label}")(lambda w, label=_label: _names_case(w, label, True))


# --- the interpreter's own peak, for reading the others -------------------------------------------------
CASES["baseline"] = {}
BOUND["baseline"] = 30.0


@case("baseline", "imports_only")
def _baseline(work: Path) -> Result:
    from pytest_tinyml._util import download  # noqa: F401
    from pytest_tinyml.emulate import tflm_fetch, tflm_sources, tflm_tree  # noqa: F401

    return ok()


# --- running ------------------------------------------------------------------------------------------
def own_peak_kb() -> int:
    """This process's peak RSS since its exec (VmHWM). Not ``ru_maxrss``: when the parent spawns with vfork,
    the kernel carries the parent's peak into the child's ``ru_maxrss`` at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_in_child(cls: str, name: str, work: Path) -> None:
    """The child side: guard, run, print one JSON line."""
    install_guard()
    try:
        result = CASES[cls][name](work)
    except BaseException as exc:  # noqa: BLE001 - any escaping exception is the finding
        result = Result("crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
    if ATTEMPTS:
        result = Result("silent_pass", f"connection attempted to {sorted(set(ATTEMPTS))} ({result.detail})")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("\n@@" + json.dumps({"kind": result.kind, "detail": result.detail, "children_kb": kids,
                               "self_kb": own_peak_kb()}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # server threads may still be dripping


@dataclass
class Outcome:
    cls: str
    name: str
    kind: str  # ok | crash | hang | silent_pass
    detail: str
    seconds: float
    peak_kb: int


def run_case(cls: str, name: str, root: Path) -> Outcome:
    work = Path(tempfile.mkdtemp(prefix=f"{cls}-", dir=root))
    log = work.parent / f"{work.name}.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--case", cls, name, str(work)], stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
        bound = BOUND[cls]
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > bound:
                os.killpg(proc.pid, 9)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                shutil.rmtree(work, ignore_errors=True)
                return Outcome(cls, name, "hang", f"over {bound:g} s", time.monotonic() - t0, usage.ru_maxrss)
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    text = log.read_text("utf-8", "replace")
    log.unlink()
    for p in work.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(work, ignore_errors=True)
    line = next((ln[2:] for ln in reversed(text.splitlines()) if ln.startswith("@@")), None)
    if line is None:
        return Outcome(cls, name, "crash", f"exit {proc.returncode}, no result: {text[-1500:]}", seconds,
                       usage.ru_maxrss)
    data = json.loads(line)
    return Outcome(cls, name, data["kind"], data["detail"], seconds, max(data["self_kb"], data["children_kb"]))


def run_classes(classes: list[str], root: Path, jobs: int = 2) -> list[Outcome]:
    from concurrent.futures import ThreadPoolExecutor

    todo = [(cls, name) for cls in classes for name in CASES[cls]]
    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(lambda cn: run_case(cn[0], cn[1], root), todo))


def table(outcomes: list[Outcome]) -> str:
    rows = [("class", "cases", "ok", "crashes", "hangs", "silent passes", "peak MB", "slowest s")]
    for cls in dict.fromkeys(o.cls for o in outcomes):
        mine = [o for o in outcomes if o.cls == cls]
        count = {k: sum(o.kind == k for o in mine) for k in ("ok", "crash", "hang", "silent_pass")}
        rows.append((cls, str(len(mine)), str(count["ok"]), str(count["crash"]), str(count["hang"]),
                     str(count["silent_pass"]), f"{max(o.peak_kb for o in mine) / 1024:.0f}",
                     f"{max(o.seconds for o in mine):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


def baseline_mb(root: Path) -> float:
    return run_case("baseline", "imports_only", root).peak_kb / 1024


def heaviest(outcomes: list[Outcome]) -> str:
    out = []
    for cls in dict.fromkeys(o.cls for o in outcomes):
        top = max((o for o in outcomes if o.cls == cls), key=lambda o: o.peak_kb)
        slow = max((o for o in outcomes if o.cls == cls), key=lambda o: o.seconds)
        out.append(f"  {cls}: heaviest {top.name} {top.peak_kb / 1024:.0f} MB, slowest {slow.name} {slow.seconds:.1f} s")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        run_in_child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    verbose = "-v" in sys.argv
    wanted = [a for a in sys.argv[1:] if a != "-v"] or list(CLASSES)
    root = Path(tempfile.mkdtemp(prefix="tinyml-supply-"))
    results = run_classes(wanted, root)
    if verbose:
        for o in results:
            print(f"{o.kind:11} {o.cls:8} {o.name:40} {o.seconds:5.1f} s {o.peak_kb / 1024:5.0f} MB  {o.detail[:90]}")
    for o in results:
        if o.kind != "ok":
            print(f"--- {o.kind} {o.cls} {o.name}: {o.detail[:1500]}")
    print(table(results))
    print(heaviest(results))
    print(f"  (a case process that only imports the modules peaks at {baseline_mb(root):.0f} MB)")
    shutil.rmtree(root, ignore_errors=True)
    raise SystemExit(1 if any(o.kind != "ok" for o in results) else 0)
