"""Pinned artifacts (wheels, sdists, Debian .debs and sources) fetched by the host into a cache.

Image builds never touch the network: the host fetches every file a target pins, checks its
sha256 and hands the files to the build as its context. A file whose hash does not match the
pin is never used (deleted, then one-line LabError), so a changed upstream file or a corrupt
download cannot slip into an image.

How a file is fetched:
  * the artifact has a `url` -> plain HTTP(S) GET of that exact file (PyPI file host, Debian pool);
  * no url and a wheel   -> `pip download` of exactly that wheel, tags taken from its file name;
  * anything else without a url is a pin-file error (an sdist needs a url: pip would try to
    build it just to read its metadata).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from lab.errors import LabError
from lab.targets import Artifact, Target

Progress = Callable[[str], None]
FETCH_TIMEOUT_S = 60


def cache_root() -> Path:
    """${XDG_CACHE_HOME:-~/.cache}/zmqlab: artifacts/ and base/ (rootfs tarballs) live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zmqlab"


def artifact_dir() -> Path:
    return cache_root() / "artifacts"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, art: Artifact) -> None:
    got = sha256_file(path)
    if got != art.sha256:
        path.unlink(missing_ok=True)
        raise LabError(f"artifact {art.file}: sha256 mismatch (pinned {art.sha256[:16]}..., "
                       f"got {got[:16]}...); the file was discarded")


def _download_url(art: Artifact, dest: Path) -> None:
    try:
        with urllib.request.urlopen(art.url, timeout=FETCH_TIMEOUT_S) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise LabError(f"artifact {art.file}: cannot fetch {art.url}: {reason}") from None


def wheel_tags(filename: str) -> tuple[str, str, list[str], str, list[str]]:
    """name, version, python tags, abi, platform tags of a wheel file name (PEP 427)."""
    stem = filename[:-len(".whl")] if filename.endswith(".whl") else ""
    parts = stem.split("-")
    if len(parts) not in (5, 6):
        raise LabError(f"artifact {filename}: not a wheel file name")
    name, version, py, abi, plat = parts[0], parts[1], parts[-3], parts[-2], parts[-1]
    return name, version, py.split("."), abi, plat.split(".")


def pip_download_command(filename: str, dest: Path) -> list[str]:
    """`pip download` of exactly this wheel, even for another Python than the host's."""
    name, version, pys, abi, plats = wheel_tags(filename)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), f"{name}=={version}"]
    cp = [p for p in pys if p.startswith("cp")]
    if cp:  # a CPython-specific wheel: ask for that interpreter, not the host's
        cmd += ["--implementation", "cp", "--python-version", cp[0][2:], "--abi", abi]
    if plats != ["any"]:
        for plat in plats:
            cmd += ["--platform", plat]
    return cmd


def _download_wheel(art: Artifact, dest: Path, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = pip_download_command(art.file, Path(tmp))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / art.file
        if not got.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"artifact {art.file}: pip download did not produce it: {last}")
        shutil.move(str(got), dest)


def fetch(art: Artifact, progress: Progress = print) -> Path:
    """Return the cached, hash-checked path of `art`, downloading it when missing or corrupt."""
    folder = artifact_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / art.file
    if path.exists():
        if sha256_file(path) == art.sha256:
            return path
        progress(f"  cached {art.file} does not match its pin; fetching it again")
        path.unlink()
    partial = folder / (art.file + ".part")
    if art.url:
        progress(f"  fetching {art.url}")
        _download_url(art, partial)
    elif art.file.endswith(".whl"):
        progress(f"  pip download {art.file}")
        _download_wheel(art, partial, progress)
    else:
        raise LabError(f"artifact {art.file}: no url pinned and not a wheel; add its url to pins.toml")
    _check(partial, art)
    partial.replace(path)
    return path


def fetch_all(target: Target, progress: Progress = print) -> list[Path]:
    """Fetch every artifact of `target`; the first failure is a one-line LabError."""
    return [fetch(art, progress) for art in target.artifacts]


def link_into(paths: Iterable[Path], folder: Path) -> None:
    """Put cached files into a build context without copying hundreds of MB when possible."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in paths:
        dst = folder / src.name
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copy2(src, dst)
