"""TFLM's own patches (flatbuffers' ``flatbuffers.patch``), applied to a verified tree: a small
``git diff`` reader where every hunk must match exactly and no path may leave the tree."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PatchError(ValueError):
    pass


def _safe_rel(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or "\\" in name:
        raise PatchError(f"unsafe path {name!r}")
    return rel


def apply_patch(tree: Path, patch_text: str) -> list[str]:
    """Apply a ``git diff`` style unified patch under ``tree``; every hunk must match exactly (at its line
    number or, failing that, at one unique place). Returns the patched paths."""
    lines = patch_text.splitlines(keepends=True)
    patched: list[str] = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        target = lines[i + 1][4:].strip().split("\t")[0]
        rel = _safe_rel(target[2:] if target.startswith("b/") else target)
        path = tree / rel
        if path.is_symlink() or not path.is_file():
            raise PatchError(f"patch names {rel}, which is not a file of the tree")
        text = path.read_text(encoding="utf-8").splitlines(keepends=True)
        i += 2
        delta = 0
        while i < len(lines) and lines[i].startswith("@@ "):
            header = lines[i].split()
            old_start, old_len = (int(x) for x in (header[1][1:].split(",") + ["1"])[:2])
            new_len = int((header[2][1:].split(",") + ["1"])[1])
            i += 1
            old: list[str] = []
            new: list[str] = []
            while (len(old) < old_len or len(new) < new_len) and i < len(lines):
                line = lines[i]
                tag, body = line[:1], line[1:]
                if line in ("\n", "\r\n"):
                    tag, body = " ", line
                if tag == " ":
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                elif tag != "\\":
                    raise PatchError(f"malformed hunk in the patch for {rel}: {line[:40]!r}")
                i += 1
            if len(old) != old_len or len(new) != new_len:
                raise PatchError(f"truncated hunk in the patch for {rel}")
            at = old_start - 1 + delta if old_len else old_start + delta
            if text[at : at + old_len] != old:
                hits = [k for k in range(len(text) - old_len + 1) if text[k : k + old_len] == old]
                if len(hits) != 1:
                    raise PatchError(f"a hunk of the patch does not apply to {rel} (line {old_start})")
                at = hits[0]
            text[at : at + old_len] = new
            delta += new_len - old_len
        path.write_text("".join(text), encoding="utf-8")
        patched.append(str(rel))
    if not patched:
        raise PatchError("the patch changes no file")
    return patched
