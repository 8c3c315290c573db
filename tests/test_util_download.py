"""The one download (``pytest_tinyml._util.download``) against servers on 127.0.0.1 only.

Redirects to another host, scheme or trust level are refused naming the target (and never connected to);
a server that drips bytes ends at the total deadline; progress lines come by time; a server that does not
speak HTTP, a bad port or a dropped connection is one line, never a traceback.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from pytest_tinyml._util import download as dl
from pytest_tinyml.emulate import tflm_sources as ts
from pytest_tinyml.options import RunOptions

if TYPE_CHECKING:
    from conftest import PytestRunner

BODY = b"0123456789" * 100


Answer = Callable[[socket.socket, str], None]


class _Server:
    """A TCP server on 127.0.0.1, one connection at a time, running ``answer(conn, path)`` for each request."""

    def __init__(self, answer: Answer) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()

        def serve() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with conn:
                    try:
                        request = conn.recv(4096).decode("latin-1")
                        answer(conn, request.split(" ")[1] if request.count(" ") >= 2 else "")
                    except OSError:
                        pass

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], _Server]]:
    made: list[_Server] = []

    def make(answer: Answer) -> _Server:
        made.append(_Server(answer))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _routes(bodies: dict[str, bytes], redirects: dict[str, str]) -> Answer:
    def answer(conn: socket.socket, path: str) -> None:
        if path in redirects:
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {redirects[path]}\r\nContent-Length: 0\r\n\r\n".encode())
        elif path in bodies:
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(bodies[path])}\r\n\r\n".encode() + bodies[path])
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    return answer


def _drip(length: int, every: float, stop: threading.Event | None = None) -> Answer:
    def answer(conn: socket.socket, path: str) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
        for _ in range(length):
            if stop is not None and stop.is_set():
                return
            conn.sendall(b"x")
            time.sleep(every)

    return answer


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_good_download_is_verified_and_published(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    bodies["/f"] = BODY
    dest = tmp_path / "d" / "f.bin"
    n = dl.download(f"{server.url}/f", dest, max_bytes=10_000, digest=("sha256", hashlib.sha256(BODY).hexdigest()))
    assert n == len(BODY) and dest.read_bytes() == BODY
    assert _leftovers(dest.parent) == ["f.bin"]


def test_checksum_and_size_failures_leave_nothing(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    bodies["/f"] = BODY
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.ChecksumMismatch, match="checksum mismatch"):
        dl.download(f"{server.url}/f", dest, max_bytes=10_000, digest=("md5", "0" * 32))
    with pytest.raises(dl.TooLarge) as err:
        dl.download(f"{server.url}/f", dest, max_bytes=100)
    assert err.value.declared == len(BODY)
    assert _leftovers(tmp_path) == []


def test_redirect_within_the_loopback_host_is_followed(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    bodies["/real"] = BODY
    redirects["/moved"] = f"{server.url}/real"
    dl.download(f"{server.url}/moved", tmp_path / "f", max_bytes=10_000)
    assert (tmp_path / "f").read_bytes() == BODY


@pytest.mark.parametrize("target", ["http://10.255.255.1/x.tar.gz", "ftp://127.0.0.1/x.tar.gz",
                                    "file:///etc/passwd", "https://127.0.0.1/x.tar.gz", "http://localhost.example/x"])
def test_redirect_off_the_loopback_host_is_refused_and_named(tmp_path: Path, serve: Callable[[Answer], _Server], target: str) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    redirects["/a"] = target
    started = time.monotonic()
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{server.url}/a", tmp_path / "f", max_bytes=10_000)
    assert time.monotonic() - started < 5  # refused, not connected to
    text = str(err.value)
    assert text.startswith(f"refused redirect to {target}") and "\n" not in text
    assert _leftovers(tmp_path) == []


def test_redirect_rules() -> None:
    ok = dl.redirect_allowed
    assert ok("https://github.com/a", "https://codeload.github.com/b")
    assert not ok("https://github.com/a", "http://codeload.github.com/b")
    assert ok("http://127.0.0.1:80/a", "http://127.0.0.1:81/b")
    assert not ok("http://127.0.0.1/a", "http://127.0.0.2/b")
    assert not ok("http://localhost/a", "http://10.0.0.1/b")
    assert ok("http://ufldl.stanford.edu/a", "https://ufldl.stanford.edu/b")
    assert not ok("http://ufldl.stanford.edu/a", "ftp://ufldl.stanford.edu/b")


def test_redirect_loop_stops_after_a_few(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    for i in range(10):
        redirects[f"/r{i}"] = f"{server.url}/r{i + 1}"
    bodies["/r10"] = BODY
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{server.url}/r0", tmp_path / "f", max_bytes=10_000)
    assert "\n" not in str(err.value)


def test_tflm_mirror_redirect_refusal_names_the_target(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    bodies: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    server = serve(_routes(bodies, redirects))
    redirects["/own/proj/archive/abc.tar.gz"] = "http://10.255.255.1/evil.tar.gz"
    pin = ts.Pin(name="proj", owner="own", repo="proj", commit="abc", sha256="0" * 64, files=1)
    with pytest.raises(ts.SourcesUnavailable) as err:
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert "refused redirect to http://10.255.255.1/evil.tar.gz" in str(err.value)
    assert "\n" not in str(err.value)


def test_drip_server_hits_the_total_deadline(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    stop = threading.Event()
    srv = serve(_drip(1000, 0.05, stop))
    started = time.monotonic()
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000, read_timeout=5, deadline=0.6)
    stop.set()
    assert time.monotonic() - started < 4
    assert "total deadline" in str(err.value) and "\n" not in str(err.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["status line", "headers"])
def test_server_dripping_its_head_hits_the_total_deadline(tmp_path: Path, serve: Callable[[Answer], _Server],
                                                          where: str) -> None:
    """urlopen reads the status line and headers before download() sees a byte of the body: the deadline
    must end those reads too (each byte comes well within the read timeout)."""
    stop = threading.Event()

    def answer(conn: socket.socket, path: str) -> None:
        head = b"HTTP/1.1 200 OK" + b" " * 1000 if where == "status line" else b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60000
        for i in range(len(head)):
            if stop.is_set():
                return
            conn.sendall(head[i : i + 1])
            time.sleep(0.05)

    srv = serve(answer)
    started = time.monotonic()
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000, read_timeout=5, deadline=0.8)
    stop.set()
    assert time.monotonic() - started < 4
    assert str(err.value) == "not finished after 0.8 s: the total deadline"
    assert _leftovers(tmp_path) == []


def test_progress_is_reported_by_time(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    srv = serve(_drip(20, 0.05))
    lines: list[str] = []
    dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000, progress=lines.append, label="proj",
                progress_every=0.2)
    assert (tmp_path / "f").read_bytes() == b"x" * 20
    assert 2 <= len(lines) <= 8, lines
    assert all(line.startswith("tinyml: downloading proj: ") and line.endswith("MB/s)") for line in lines)


def test_not_an_http_server_is_one_line(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    srv = serve(lambda conn, path: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x1b[31mhello\r\n"))
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000)
    assert "does not answer HTTP" in str(err.value)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


def test_dropped_connection_is_one_line(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    srv = serve(lambda conn, path: None)  # reads the request, closes without a word
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000)
    assert "\n" not in str(err.value) and str(err.value)


def test_truncated_body_is_one_line(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    srv = serve(lambda conn, path: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"))
    with pytest.raises(dl.Truncated) as err:
        dl.download(f"{srv.url}/f", tmp_path / "f", max_bytes=10_000)
    assert err.value.expected == 100 and "\n" not in str(err.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("url, words", [("http://127.0.0.1:abc/f", "invalid URL"),
                                        ("http://[::1/f", "invalid URL (Invalid IPv6 URL)"),
                                        ("ftp://127.0.0.1/f", "not an http(s) URL"),
                                        ("127.0.0.1/f", "not an http(s) URL")])
def test_bad_urls_are_one_line(tmp_path: Path, url: str, words: str) -> None:
    with pytest.raises(dl.DownloadError) as err:
        dl.download(url, tmp_path / "f", max_bytes=10)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_tflm_non_http_mirror_and_bad_port_are_one_line(tmp_path: Path, serve: Callable[[Answer], _Server]) -> None:
    srv = serve(lambda conn, path: conn.sendall(b"220 ftp ready\r\n"))
    pin = ts.Pin(name="proj", owner="own", repo="proj", commit="abc", sha256="0" * 64, files=1)
    for mirror in (srv.url, "http://127.0.0.1:abc"):
        with pytest.raises(ts.SourcesUnavailable) as err:
            ts.fetch_project(pin, tmp_path / "cache", ts.mirror_url(mirror), lambda _m: None)
        assert "cannot download" in str(err.value) and "\n" not in str(err.value)


def test_tflm_mirror_that_is_not_a_url_is_one_line() -> None:
    with pytest.raises(ts.SourcesUnavailable) as err:
        ts.mirror_url("http://[::1")
    assert str(err.value).startswith("TFLM source mirror 'http://[::1' is not a valid URL (Invalid IPv6 URL)")
    assert "\n" not in str(err.value)


def test_tflm_sources_path_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "sources"
    cache.write_text("not a directory")
    pin = ts.Pin(name="proj", owner="own", repo="proj", commit="abc", sha256="0" * 64, files=1)
    table = {name: replace(pin, name=name) for name in ts.projects_for("reference")}
    with pytest.raises(ts.SourcesUnavailable) as err:
        ts.locate_sources(cache, kernels="reference", mirror="http://127.0.0.1:9", table=table, tflm_root="")
    assert f"TFLM source cache {cache} is not a directory" in str(err.value) and "\n" not in str(err.value)



def test_ini_download_deadline_ends_a_dripping_mirror_and_names_the_option(
    tmp_path: Path, serve: Callable[[Answer], _Server], tflite_factory: ModuleType, run_pytest: PytestRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole way a user meets it: ini ``tinyml_download_deadline`` ends the pinned download from a mirror
    that sends a byte every 0.2 s; the firmware items fall back to the project's runtime and say why."""
    from pytest_tinyml.emulate import toolchain_status

    if not toolchain_status().ok:
        pytest.skip(f"firmware toolchain missing; to enable: {toolchain_status().hint}")
    assert RunOptions(cache_dir=tmp_path).download_deadline == 1800.0  # the default: 30 minutes
    monkeypatch.delenv("TINYML_OFFLINE", raising=False)  # the suite's default; this mirror is on 127.0.0.1
    stop = threading.Event()
    srv = serve(_drip(10_000_000, 0.2, stop))
    (tmp_path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\ntinyml_download_deadline = 1s\n"
        f"tinyml_tflm_mirror = {srv.url}\ntinyml_tflm_sources = {tmp_path / 'sources'}\n"
        f"tinyml_cache_dir = {tmp_path / 'c'}\n"
    )
    outcome, out = run_pytest.checked(["--tinyml-model", "m.tflite", "-k", "firmware_bitexact", "-rA"], tmp_path,
                                      timeout=240)
    stop.set()
    assert outcome.kind == "pytest_exit_0", out
    line = next(x for x in out.splitlines() if x.startswith("real TFLM unavailable (tflite-micro: cannot download"))
    assert "not finished after 1 s" in line and "the total deadline" in line
    assert "fix: raise ini tinyml_download_deadline (now 1 s)" in line
    assert "PASSED m.tflite::firmware_bitexact" in out  # judged on the project's runtime, as the line says
    assert [p.name for p in (tmp_path / "sources").iterdir() if not p.name.endswith(".lock")] == []
