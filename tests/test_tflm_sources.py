"""Pinned TFLM source download: a local HTTP server on 127.0.0.1 serves archives this test builds.

The archives are small trees made here (not TFLM): what is under test is the download, the safe unpack,
the tree digest, the patch step and the messages, which do not depend on what the files contain.
"""

from __future__ import annotations

import http.server
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from pytest_tinyml.emulate import tflm_fetch, tflm_patch, tflm_pins
from pytest_tinyml.emulate import tflm_sources as ts

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PATCH = """diff --git a/include/x.h b/include/x.h
--- a/include/x.h
+++ b/include/x.h
@@ -1,3 +1,4 @@
 #ifndef X_H
 #define X_H
+#define PATCHED 1
 #endif
--
2.0
"""


def _tree(files: dict[str, bytes], tmp: Path) -> Path:
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp


def _targz(top: str, files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        d = tarfile.TarInfo(top)
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


class _Server:
    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        routes, truncate = self.routes, self.truncate

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in truncate else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


FILES = {"README": b"hello\n", "include/x.h": b"#ifndef X_H\n#define X_H\n#endif\n", "src/a.c": b"int a;\n"}


def _pin(tmp_path: Path, name: str = "proj", files: dict[str, bytes] = FILES) -> ts.Pin:
    digest, count = tflm_pins.tree_digest(_tree(files, tmp_path / f"ref-{name}"))
    return ts.Pin(name=name, owner="own", repo=name, commit=COMMIT, sha256=digest, files=count)


def _serve(server: _Server, pin: ts.Pin, body: bytes) -> None:
    server.routes[f"/{pin.owner}/{pin.repo}/archive/{pin.commit}.tar.gz"] = body


def test_digest_is_defined_by_sorted_paths_sizes_and_contents(tmp_path: Path) -> None:
    import hashlib

    root = _tree({"b": b"2", "a/z": b"1"}, tmp_path / "t")
    (root / "link").symlink_to("b")  # symlinks are not part of the digest
    expected = hashlib.sha256(b"a/z\x001\x001" + b"b\x001\x002").hexdigest()
    assert tflm_pins.tree_digest(root) == (expected, 2)
    (root / "b").write_bytes(b"3")
    assert tflm_pins.tree_digest(root)[0] != expected


def test_good_archive_downloads_verifies_and_is_reused(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES))
    lines: list[str] = []
    out = ts.fetch_project(pin, tmp_path / "cache", server.url, lines.append)
    assert out == tmp_path / "cache" / pin.dirname
    assert (out / "src/a.c").read_bytes() == b"int a;\n"
    assert any("downloading proj" in ln for ln in lines) and any("verified (3 files)" in ln for ln in lines)
    assert ts.cache_entry_ok(tmp_path / "cache", pin)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no leftovers


def test_patch_is_applied_after_verification(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    patched = dict(FILES, **{"include/x.h": b"#ifndef X_H\n#define X_H\n#define PATCHED 1\n#endif\n"})
    after = tflm_pins.tree_digest(_tree(patched, tmp_path / "patched"))[0]
    pin = replace(pin, patch="p.patch", patched_sha256=after)
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES))
    out = ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None, PATCH)
    assert b"PATCHED" in (out / "include/x.h").read_bytes()
    assert ts.cache_entry_ok(tmp_path / "cache", pin)


def test_checksum_mismatch_is_one_line_and_leaves_nothing(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    _serve(server, pin, _targz(f"proj-{COMMIT}", dict(FILES, **{"src/a.c": b"int b;\n"})))
    with pytest.raises(ts.SourcesUnavailable) as err:
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert "checksum mismatch" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "cache").iterdir())


def test_truncated_archive(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES))
    server.truncate.add(f"/own/proj/archive/{COMMIT}.tar.gz")
    with pytest.raises(ts.SourcesUnavailable) as err:
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert "ended after" in str(err.value) or "truncated" in str(err.value)
    assert not list((tmp_path / "cache").iterdir())


def test_truncated_gzip_with_honest_length(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    body = _targz(f"proj-{COMMIT}", FILES)
    _serve(server, pin, body[: len(body) - 40])
    with pytest.raises(ts.SourcesUnavailable, match="truncated or not a tar.gz"):
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)


def test_server_down(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ts.SourcesUnavailable, match="cannot download"):
        ts.fetch_project(_pin(tmp_path), tmp_path / "cache", f"http://127.0.0.1:{port}", lambda _m: None)


def test_http_404(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(ts.SourcesUnavailable, match="HTTP 404"):
        ts.fetch_project(_pin(tmp_path), tmp_path / "cache", server.url, lambda _m: None)


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", f"proj-{COMMIT}/../../evil", "other-top/x"])
def test_path_traversal_member_rejects_archive(tmp_path: Path, server: _Server, member: str) -> None:
    pin = _pin(tmp_path)
    bad = tarfile.TarInfo(member)
    bad.size = 1
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES, [bad]))
    with pytest.raises(ts.SourcesUnavailable, match="unsafe path|outside its top directory"):
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()
    assert not list((tmp_path / "cache").iterdir())


def test_links_and_devices_are_never_created(tmp_path: Path, server: _Server) -> None:
    pin = _pin(tmp_path)
    top = f"proj-{COMMIT}"
    link = tarfile.TarInfo(f"{top}/escape")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo(f"{top}/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
    dev = tarfile.TarInfo(f"{top}/dev")
    dev.type = tarfile.CHRTYPE
    _serve(server, pin, _targz(top, FILES, [link, hard, dev]))
    out = ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert sorted(p.name for p in out.iterdir()) == ["README", "include", "src"]


def test_file_count_limit(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflm_fetch, "MAX_FILES", 2)
    pin = _pin(tmp_path)
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES))
    with pytest.raises(ts.SourcesUnavailable, match="more than 2 files"):
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)


def _header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> bytes:
    """One ustar header block written by hand (tarfile's writer is too slow for 100,000 of them)."""
    block = bytearray(512)
    raw = name.encode()
    block[: len(raw)] = raw
    block[100:108] = b"0000644\0"
    block[108:124] = b"0000000\0" * 2
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _gz(chunks: Iterator[bytes] | list[bytes], path: Path) -> Path:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(packer.compress(chunk))
        out.write(packer.compress(bytes(1024)) + packer.flush())
    return path


def test_100000_directories_are_refused_soon_after_the_member_limit(tmp_path: Path) -> None:
    top = f"proj-{COMMIT}"
    archive = _gz([_header(top + "/", tarfile.DIRTYPE)]
                  + [_header(f"{top}/d{i}/", tarfile.DIRTYPE) for i in range(100_000)], tmp_path / "dirs.tar.gz")
    start = time.monotonic()
    with pytest.raises(ts.SourcesUnavailable, match=r"^proj: archive has more than 50,000 members \(files, "):
        tflm_fetch.safe_unpack(archive, tmp_path / "out", "proj")
    assert time.monotonic() - start < 20
    assert not (tmp_path / "out").exists()  # nothing left behind, not even the directory it was given


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                                  tarfile.FIFOTYPE, tarfile.DIRTYPE])
def test_every_kind_of_member_counts_against_the_limit(
    tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch, kind: bytes
) -> None:
    monkeypatch.setattr(tflm_fetch, "MAX_MEMBERS", 10)
    pin = _pin(tmp_path)
    extra = []
    for i in range(10):
        info = tarfile.TarInfo(f"proj-{COMMIT}/m{i}")
        info.type, info.linkname = kind, "README"
        extra.append(info)
    _serve(server, pin, _targz(f"proj-{COMMIT}", FILES, extra))
    with pytest.raises(ts.SourcesUnavailable, match="more than 10 members"):
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)
    assert not list((tmp_path / "cache").iterdir())


def test_long_name_record_claiming_512_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """The record is really there (512 MiB of zeros, 2 MB compressed): reading it would cost 512 MiB."""
    size = 512 << 20
    zeros = bytes(1 << 20)
    chunks = [_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, size), *(zeros for _ in range(size >> 20)),
              _header(f"proj-{COMMIT}/README", size=0)]
    archive = _gz(iter(chunks), tmp_path / "bomb.tar.gz")
    child = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pytest_tinyml.emulate import tflm_fetch\n"
        "try:\n"
        "    tflm_fetch.safe_unpack(Path(sys.argv[1]), Path(sys.argv[2]), 'proj')\n"
        "except tflm_fetch.SourcesUnavailable as exc:\n"
        "    print(exc)\n"
        "print(next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n"
    )
    # VmHWM is this process's own peak (ru_maxrss would also count the parent's peak: Linux keeps it across
    # fork and exec, and an xdist worker that imported TensorFlow has a peak of over 1 GB)
    out = subprocess.run([sys.executable, "-c", child, str(archive), str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=120, check=True).stdout.splitlines()
    assert out[0] == ("proj: archive header record of 536,870,912 bytes (long name, pax header or sparse map) "
                      "is above the 65,536-byte bound; to enable: check the mirror")
    assert int(out[1]) < 150 * 1024  # KiB: the interpreter, not the record
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK])
def test_oversized_pax_and_long_link_records_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = _gz([_header("pax", kind, 1 << 20), bytes(1 << 20), _header(f"proj-{COMMIT}/README")],
                  tmp_path / "pax.tar.gz")
    with pytest.raises(ts.SourcesUnavailable, match=r"header record of 1,048,576 bytes .* 65,536-byte bound"):
        tflm_fetch.safe_unpack(archive, tmp_path / "out", "proj")
    assert not (tmp_path / "out").exists()


def test_header_bytes_of_an_archive_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflm_fetch, "MAX_HEADERS_TOTAL", 4096)
    archive = _gz([_header(f"proj-{COMMIT}/f{i}") for i in range(20)], tmp_path / "many.tar.gz")
    with pytest.raises(ts.SourcesUnavailable, match="archive headers take more than"):
        tflm_fetch.safe_unpack(archive, tmp_path / "out", "proj")


@pytest.mark.parametrize(("kind", "why"), [(tarfile.GNUTYPE_SPARSE, "is a sparse file"),
                                           (b"Z", "has the unknown tar type b'Z'")])
def test_sparse_and_unknown_members_reject_the_archive(tmp_path: Path, kind: bytes, why: str) -> None:
    archive = _gz([_header(f"proj-{COMMIT}/odd", kind, 512), bytes(512)], tmp_path / "odd.tar.gz")
    with pytest.raises(ts.SourcesUnavailable, match=f"archive member 'proj-{COMMIT}/odd' {re.escape(why)}"):
        tflm_fetch.safe_unpack(archive, tmp_path / "out", "proj")


@pytest.mark.parametrize("second", ["README", "README/inside"])
def test_member_written_twice_or_under_a_file_rejects_the_archive(tmp_path: Path, second: str) -> None:
    top = f"proj-{COMMIT}"
    archive = _gz([_header(f"{top}/README", size=0), _header(f"{top}/{second}", size=0)], tmp_path / "twice.tar.gz")
    with pytest.raises(ts.SourcesUnavailable, match=f"^proj: archive member '{top}/{second}' appears twice"):
        tflm_fetch.safe_unpack(archive, tmp_path / "out", "proj")
    assert not (tmp_path / "out").exists()


def test_archive_size_limit(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflm_fetch, "MAX_ARCHIVE", 100)
    pin = _pin(tmp_path)
    _serve(server, pin, _targz(f"proj-{COMMIT}", {"big": bytes(range(256)) * 64}))
    with pytest.raises(ts.SourcesUnavailable, match="limit for a source archive"):
        ts.fetch_project(pin, tmp_path / "cache", server.url, lambda _m: None)


def test_mirror_must_be_https_unless_loopback() -> None:
    assert ts.mirror_url("https://github.com/") == "https://github.com"
    assert ts.mirror_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    with pytest.raises(ts.SourcesUnavailable, match="not an https URL"):
        ts.mirror_url("http://example.com")
    with pytest.raises(ts.SourcesUnavailable):
        ts.mirror_url("file:///etc")


def _table(tmp_path: Path) -> dict[str, ts.Pin]:
    return {n: _pin(tmp_path, n) for n in ts.projects_for("cmsis_nn")}


def test_locate_downloads_then_uses_the_cache_offline(tmp_path: Path, server: _Server) -> None:
    table = _table(tmp_path)
    for pin in table.values():
        _serve(server, pin, _targz(f"{pin.repo}-{COMMIT}", FILES))
    cache = tmp_path / "cache"
    got = ts.locate_sources(cache, kernels="reference", mirror=server.url, table=table, tflm_root="")
    assert got.origin == "download" and got.cmsis_nn is None and got.tflm == cache / f"tflite-micro-{COMMIT}"
    server.routes.clear()  # nothing can be downloaded any more
    again = ts.locate_sources(cache, kernels="reference", offline=True, table=table, tflm_root="")
    assert again.origin == "source cache"
    with pytest.raises(ts.SourcesUnavailable, match=r"not in the source cache .*cmsis_nn.*offline"):
        ts.locate_sources(cache, kernels="cmsis_nn", offline=True, table=table, tflm_root="")


def test_locate_refuses_a_tampered_cache_entry(tmp_path: Path, server: _Server) -> None:
    table = _table(tmp_path)
    cache = tmp_path / "cache"
    for pin in table.values():
        _tree(FILES, cache / pin.dirname)
    (cache / table["ruy"].dirname / "src/a.c").write_bytes(b"int evil;\n")
    with pytest.raises(ts.SourcesUnavailable, match="does not match the pinned tree digest of ruy"):
        ts.locate_sources(cache, kernels="reference", offline=True, table=table, tflm_root="")


@pytest.mark.parametrize(("odd", "what"), [("link-file", "symbolic link"), ("link-dir", "symbolic link"),
                                           ("fifo", "FIFO")])
def test_locate_refuses_a_cache_entry_holding_a_link_or_fifo(tmp_path: Path, odd: str, what: str) -> None:
    """The tree digest ignores links (it is defined on regular files), so the cache refuses them instead."""
    table = _table(tmp_path)
    cache = tmp_path / "cache"
    for pin in table.values():
        _tree(FILES, cache / pin.dirname)
    entry = cache / table["ruy"].dirname
    outside = _tree({"evil.cc": b"int evil;\n"}, tmp_path / "outside")
    if odd == "link-file":
        (entry / "src/evil.cc").symlink_to(outside / "evil.cc")
    elif odd == "link-dir":
        (entry / "src/evil.cc").symlink_to(outside)
    else:
        os.mkfifo(entry / "src/evil.cc")
    message = (f"source cache entry {entry} holds src/evil.cc, a {what}: a verified tree holds only regular files "
               "and directories; to enable: delete that directory to download it again, or set TFLM_ROOT")
    with pytest.raises(ts.SourcesUnavailable) as info:
        ts.locate_sources(cache, kernels="reference", offline=True, table=table, tflm_root="")
    assert str(info.value) == message


TFLM_FILES = {
    **FILES,
    "tensorflow/lite/micro/micro_interpreter.cc": b"int i;\n",
    "tensorflow/lite/micro/kernels/add.cc": b"int add;\n",
    "tensorflow/lite/core/api/error_reporter.cc": b"int e;\n",
    "Source/BasicMathFunctions/arm_add.c": b"int a;\n",
}


def test_build_compiles_only_the_verified_manifest(tmp_path: Path) -> None:
    """Files that appear in a verified cache entry later in the same run (a symlinked .cc, a new kernel, an
    optimized kernel that would replace a reference one) are never compiled; the next run refuses the entry."""
    from pytest_tinyml.emulate.tflm_tree import tree_from_sources

    table = {n: _pin(tmp_path, n, TFLM_FILES) for n in ts.projects_for("cmsis_nn")}
    cache = tmp_path / "cache"
    for pin in table.values():
        _tree(TFLM_FILES, cache / pin.dirname)
    src = ts.locate_sources(cache, kernels="cmsis_nn", offline=True, table=table, tflm_root="")
    before = tree_from_sources(src, "cmsis_nn", "cortex-m4")
    assert [p.name for p in before.kernel_sources] == ["add.cc"]
    assert {p.name for p in before.core_sources} == {"micro_interpreter.cc", "error_reporter.cc"}
    assert [p.name for p in before.library_sources] == ["arm_add.c"]
    outside = _tree({"evil.cc": b"int evil;\n"}, tmp_path / "outside")
    added = {
        "tensorflow/lite/micro/kernels/evil.cc": b"int evil;\n",
        "tensorflow/lite/micro/kernels/cmsis_nn/add.cc": b"int evil;\n",
        "tensorflow/lite/micro/evil.cc": b"int evil;\n",
        "tensorflow/lite/core/evil.c": b"int evil;\n",
        "Source/BasicMathFunctions/evil.c": b"int evil;\n",
    }
    for project in ("tflite-micro", "cmsis_nn"):
        _tree(added, cache / table[project].dirname)
    (cache / table["tflite-micro"].dirname / "tensorflow/lite/micro/link.cc").symlink_to(outside / "evil.cc")
    again = ts.locate_sources(cache, kernels="cmsis_nn", offline=True, table=table, tflm_root="")
    after = tree_from_sources(again, "cmsis_nn", "cortex-m4")
    assert (after.core_sources, after.kernel_sources, after.library_sources) == (
        before.core_sources, before.kernel_sources, before.library_sources)
    tflm_pins._verified.cache_clear()  # the next run checks the entry again
    with pytest.raises(ts.SourcesUnavailable, match="tflite-micro-.* holds tensorflow/lite/micro/link.cc, a symbolic"):
        ts.locate_sources(cache, kernels="cmsis_nn", offline=True, table=table, tflm_root="")


def test_tflm_root_wins_and_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ts.SourcesUnavailable, match="not a tflite-micro checkout"):
        ts.locate_sources(tmp_path, tflm_root=tmp_path)


def test_shipped_pins_cover_tflm_and_its_third_party_pins() -> None:
    table = ts.pins()
    assert table["tflite-micro"].commit == "90b983c2b3f1480642e040bbd2ddb37b998f3424"
    assert table["cmsis_nn"].commit == "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae"
    assert table["flatbuffers"].patch and table["flatbuffers"].patched_sha256
    assert all(len(p.sha256) == 64 and p.files > 0 for p in table.values())


def test_patch_that_does_not_apply_is_refused(tmp_path: Path) -> None:
    root = _tree({"include/x.h": b"something else\n"}, tmp_path / "t")
    with pytest.raises(tflm_patch.PatchError, match="does not apply"):
        tflm_patch.apply_patch(root, PATCH)
    with pytest.raises(tflm_patch.PatchError, match="unsafe path"):
        tflm_patch.apply_patch(root, PATCH.replace("b/include/x.h", "b/../x.h"))


@pytest.mark.skipif(
    __import__("shutil").which("arm-none-eabi-gcc") is None or __import__("shutil").which("qemu-system-arm") is None,
    reason="firmware toolchain missing; to enable: apt-get install gcc-arm-none-eabi qemu-system-arm",
)
def test_plugin_download_failure_falls_back_and_says_why(
    pytester: pytest.Pytester, server: _Server, monkeypatch: pytest.MonkeyPatch, tflite_factory: ModuleType
) -> None:
    """A mirror serving an archive that is not the pinned tree: one line saying so, then the firmware items
    run the project's runtime and every one of them names it."""
    pin = ts.pins()["tflite-micro"]
    _serve(server, pin, _targz(f"tflite-micro-{pin.commit}", FILES))
    for name in ("TFLM_ROOT", "TINYML_TFLM_SOURCES", "TINYML_OFFLINE", "TINYML_FIRMWARE_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TINYML_TFLM_MIRROR", server.url)
    (pytester.path / "int8.tflite").write_bytes(tflite_factory.int8_cnn(seed=2))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--tinyml-model", "int8.tflite", "--tinyml-firmware-samples", "3",
        "-k", "firmware", "--tinyml-report", "rep", timeout=600,
    )
    out = result.stdout.str()
    lines = [ln for ln in result.outlines if ln.startswith("PASSED int8.tflite::firmware")]
    assert len(lines) == 2, out
    report = (pytester.path / "rep" / "report.json").read_text()
    label = "runtime tinyml (the project's own), real TFLM unavailable (tflite-micro: checksum mismatch"
    assert report.count(label) >= 2 and '"runtime": "tinyml"' in report
