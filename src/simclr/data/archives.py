"""Safe, atomic, cached extraction of dataset archives (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from simclr.errors import InputError, one_line
from simclr.files import umask


def extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract ``archive`` once into ``cache_dir/archives/<key>`` and return that folder.

    The key hashes the resolved path, size and mtime, so a changed archive is extracted afresh. The
    extraction goes to a temporary sibling that is renamed into place only when complete.
    """
    info = archive.stat()
    identity = f"{archive.resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    parent = cache_dir / "archives"
    dest = parent / key
    if dest.is_dir():
        return dest
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise InputError(
            f"cannot write to cache folder {parent} ({one_line(exc)}); set SIMCLR_CACHE to a writable folder"
        ) from exc
    try:
        with tqdm(desc=f"extracting {archive.name} (first use only)", unit=" files", disable=None,
                  leave=False) as bar:  # shown on a terminal only
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, tmp, bar)
            else:
                _extract_tar(archive, tmp, bar)
        os.chmod(tmp, 0o777 & ~umask())  # readable as the umask allows, not owner-only as mkdtemp made it
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not a concurrent extraction that finished first
                raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError) as exc:  # fmt: skip
        raise InputError(
            f"cannot extract archive {archive} into {parent} ({type(exc).__name__}: {one_line(exc)}); "
            "check that it is a complete .tar/.tar.gz/.zip file"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _member_target(dest: Path, name: str, archive: Path) -> Path:
    """Where member ``name`` goes under ``dest``; absolute paths and ``..`` are refused."""
    clean = name.replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in parts:
        raise InputError(f"unsafe member {name!r} in archive {archive}: absolute paths and '..' are refused")
    return dest.joinpath(*parts)


def _extract_tar(archive: Path, dest: Path, bar: tqdm) -> None:
    """Extract directories and regular files of a tar archive; links, devices and FIFOs are skipped."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            bar.update()
            target = _member_target(dest, member.name, archive)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isreg():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)


def _extract_zip(archive: Path, dest: Path, bar: tqdm) -> None:
    """Extract directories and regular files of a zip archive; symlinks and special files are skipped."""
    with zipfile.ZipFile(archive) as zf:
        bar.reset(total=len(zf.infolist()))
        for info in zf.infolist():
            bar.update()
            target = _member_target(dest, info.filename, archive)
            unix_mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not unix_mode or stat.S_ISREG(unix_mode):
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
