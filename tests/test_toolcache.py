"""The user-level tool cache (pytest_tinyml._util.toolcache): built once, verified, shared by processes and
projects, bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_tinyml._util.toolcache import ToolCache
from pytest_tinyml.options import Environment, RunOptions


def _maker(calls: list[Path], text: str = "payload") -> object:
    def make(folder: Path) -> None:
        calls.append(folder)
        (folder / "lib.a").write_text(text)
        (folder / "sub").mkdir()
        (folder / "sub" / "x.o").write_text(text + "-x")

    return make


def test_an_entry_is_built_once_and_reused(tmp_path: Path) -> None:
    calls: list[Path] = []
    cache = ToolCache(tmp_path / "uc")
    with cache.entry("lib", "k1", _maker(calls)) as first:  # type: ignore[arg-type]
        assert not first.cached and (first.path / "lib.a").read_text() == "payload"
    with cache.entry("lib", "k1", _maker(calls)) as second:  # type: ignore[arg-type]
        assert second.cached and second.path == first.path
    # a new process (a second project) trusts it through the recorded digest, without building
    with ToolCache(tmp_path / "uc").entry("lib", "k1", _maker(calls)) as third:  # type: ignore[arg-type]
        assert third.cached
    assert len(calls) == 1


@pytest.mark.parametrize("tamper", ["edit", "edit-keep-mtime", "extra-file", "symlink", "remove-file", "index"])
def test_a_changed_entry_is_not_trusted_and_is_built_again(tmp_path: Path, tamper: str) -> None:
    calls: list[Path] = []
    cache = ToolCache(tmp_path / "uc")
    with cache.entry("lib", "k1", _maker(calls)) as e:  # type: ignore[arg-type]
        path = e.path
    lib = path / "lib.a"
    if tamper == "edit":
        lib.write_text("evil")
    elif tamper == "edit-keep-mtime":  # same size, mtime put back: the ctime still moves
        st = lib.stat()
        lib.write_text("paylaod")
        os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif tamper == "extra-file":
        (path / "sub" / "evil.o").write_text("x")
    elif tamper == "symlink":
        lib.unlink()
        lib.symlink_to("/etc/hostname")
    elif tamper == "remove-file":
        (path / "sub" / "x.o").unlink()
    else:
        (tmp_path / "uc" / "index" / "lib" / "k1").write_text("0" * 64 + "\n")
    for fresh in (cache, ToolCache(tmp_path / "uc")):  # this process's memo and a new process's view
        with fresh.entry("lib", "k1", _maker(calls)) as again:  # type: ignore[arg-type]
            assert (again.path / "lib.a").read_text() == "payload"
            assert not (again.path / "lib.a").is_symlink() and not (again.path / "sub" / "evil.o").exists()
    assert len(calls) == 2  # built again once, then trusted


def test_a_touched_but_unchanged_entry_is_hashed_again_and_kept(tmp_path: Path) -> None:
    calls: list[Path] = []
    cache = ToolCache(tmp_path / "uc")
    with cache.entry("lib", "k1", _maker(calls)) as e:  # type: ignore[arg-type]
        lib = e.path / "lib.a"
    os.utime(lib, (1, 1))  # stat signature differs, contents do not
    with ToolCache(tmp_path / "uc").entry("lib", "k1", _maker(calls)) as again:  # type: ignore[arg-type]
        assert again.cached
    assert len(calls) == 1


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_tinyml._util.toolcache import ToolCache

    root, name, gate = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def make(folder):
        with open(root.parent / "builds.log", "a") as log:
            log.write(name + "\\n")
        (root.parent / f"{name}.building").touch()
        while not gate.exists():  # hold the build until the test opens the gate
            time.sleep(0.01)
        (folder / "lib.a").write_text("built by " + name)

    def waiting():
        (root.parent / f"{name}.waiting").touch()

    with ToolCache(root).entry("tflm-lib", "shared", make, on_wait=waiting) as e:
        print(name, e.cached, (e.path / "lib.a").read_text())
    """
)


def _wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 120.0) -> None:
    """Until ``path`` exists (the child got there) or the child ended (then the test fails on its output)."""
    end = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > end:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            pytest.fail(f"the child never reached {path.name}: {out}")
        time.sleep(0.01)


def test_two_processes_wait_for_one_build(tmp_path: Path) -> None:
    """Two processes (two projects) want the same entry at once: one builds, the other waits and uses it."""
    root, gate = tmp_path / "uc", tmp_path / "gate"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    cmd = [sys.executable, str(script), str(root)]
    a = subprocess.Popen([*cmd, "a", str(gate)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(tmp_path / "a.building", a)
        b = subprocess.Popen([*cmd, "b", str(gate)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(tmp_path / "b.waiting", b)  # b found a's build in progress and waits on its lock
            gate.touch()
            out_a, out_b = a.communicate(timeout=120)[0], b.communicate(timeout=120)[0]
        finally:
            b.kill()
    finally:
        a.kill()
    assert (tmp_path / "builds.log").read_text() == "a\n"
    assert out_a.strip() == "a False built by a"
    assert out_b.strip() == "b True built by a"


def test_the_size_bound_removes_least_recently_used_entries_not_ones_in_use(tmp_path: Path) -> None:
    root = tmp_path / "uc"
    cache = ToolCache(root, limit_bytes=12_000)

    def blob(folder: Path) -> None:
        (folder / "blob").write_bytes(b"\0" * 4000)

    for i, key in enumerate(("old", "held", "new")):
        with cache.entry("lib", key, blob):
            pass
        os.utime(root / "lib" / f"{key}.used", (1000 + i, 1000 + i))  # last use: old < held < new
    # another process uses "held" (a shared lock on its entry) while the cache grows past its bound
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys
            from pathlib import Path
            from pytest_tinyml._util.toolcache import ToolCache
            with ToolCache(Path(sys.argv[1])).entry("lib", "held", lambda f: None):
                print("holding", flush=True)
                sys.stdin.read()
            """), str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with cache.entry("lib", "newest", blob):
            pass  # 4 x 4,000 B > 12,000 B: pruned after publication
        left = {key for _kind, key, _size, _used in cache.entries()}
    finally:
        holder.communicate("", timeout=60)
    assert left == {"held", "new", "newest"}  # "old" went first; "held" was in use
    assert not (root / "index" / "lib" / "old").exists()
    with cache.entry("lib", "old", blob) as rebuilt:  # a pruned entry is simply built again
        assert not rebuilt.cached


def test_where_the_user_cache_is(tmp_path: Path) -> None:
    home_default = Environment.read({}).default_user_cache()
    assert home_default == Path.home() / ".cache" / "pytest-tinyml"
    assert Environment.read({"XDG_CACHE_HOME": str(tmp_path / "xdg")}).default_user_cache() == tmp_path / "xdg" / "pytest-tinyml"
    assert Environment.read({"XDG_CACHE_HOME": "relative/xdg"}).default_user_cache() == home_default  # XDG: absolute only
    env = Environment.read({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "TINYML_USER_CACHE": str(tmp_path / "mine")})
    assert env.default_user_cache() == tmp_path / "mine"
    opts = RunOptions.resolve(env, cache_dir=tmp_path / "project")
    assert opts.tools_dir == tmp_path / "mine" and opts.sources_dir == tmp_path / "mine" / "tflm-sources"
    ini = RunOptions.resolve(env, cache_dir=tmp_path / "project", user_cache=tmp_path / "ini")
    assert ini.tools_dir == tmp_path / "ini"  # the ini setting wins over the environment
    assert RunOptions(cache_dir=tmp_path / "p").tools_dir == tmp_path / "p" / "tools"  # API use: beside the cache


def test_bad_user_cache_size_is_a_one_line_usage_error(run_pytest: object, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntinyml_user_cache_size = lots\n")
    (pytester.path / "model.tflite").write_bytes(b"not a model")
    result = run_pytest("--tinyml-model", "model.tflite")  # type: ignore[operator]
    assert result.ret == 4
    assert "ini tinyml_user_cache_size:" in result.stderr.str() and "Traceback" not in result.stderr.str()
