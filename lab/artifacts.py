"""Pinned artifacts (wheels, sdists, Debian .debs and sources) fetched by the host into a cache.

Image builds never touch the network: the host fetches every file a target pins, checks its
sha256 and hands the files to the build as its context. A file whose hash does not match the
pin is never used, so a changed upstream file or a corrupt download cannot slip into an image.

A bad pin cannot damage the cache: every download goes to a temporary file of its own beside
the cache, is verified, and only then renamed over the cached name (so concurrent labs never
see half a file). A download that does not match its pin is a one-line LabError naming the
pinned and the actual sha256; it is discarded and nothing already in the cache is touched --
not even a cached copy that does not match the pin (a wrong pin must not delete a good file).
File names are single safe path components (lab.targets.check_name).

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
from lab.targets import Artifact, Target, check_name

Say = Callable[[str], None]          # where a line of progress goes (print, lab.session.say)
FETCH_TIMEOUT_S = 60


def cache_root() -> Path:
    """${XDG_CACHE_HOME:-~/.cache}/zmqlab: artifacts/ and base/ (rootfs tarballs) live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zmqlab"


def artifact_dir() -> Path:
    return cache_root() / "artifacts"


def cache_dir(path: Path) -> Path:
    """`path`, a folder of the cache, made if missing and writable; else a one-line LabError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".zmqlab-write-probe-")
        probe.close()
    except OSError as exc:
        raise LabError(f"cannot use the cache directory {path}: {exc.strerror or exc} "
                       f"(set XDG_CACHE_HOME to a writable folder)") from None
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, art: Artifact, cached_sha: str | None = None) -> None:
    """The downloaded file at `path` must match the pin; the caller discards it if not."""
    got = sha256_file(path)
    if got != art.sha256:
        hint = "; the cached copy has that hash too: the pin looks wrong" if cached_sha == got else ""
        raise LabError(f"artifact {art.file}: sha256 mismatch: pinned {art.sha256}, downloaded {got}; "
                       f"the download was discarded and the cache left as it was{hint}")


def _download_url(art: Artifact, dest: Path) -> None:
    try:
        with urllib.request.urlopen(art.url, timeout=FETCH_TIMEOUT_S) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
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


def _download_wheel(art: Artifact, dest: Path, progress: Say) -> None:
    from lab.backends.local import lab_id
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".pip-{lab_id()}-") as tmp:
        cmd = pip_download_command(art.file, Path(tmp))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / art.file
        if not got.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"artifact {art.file}: pip download did not produce it: {last}")
        shutil.move(str(got), dest)


def fetch(art: Artifact, progress: Say = print) -> Path:
    """Return the cached, hash-checked path of `art`, downloading it when missing or corrupt.
    Nothing in the cache changes unless a download matched the pin."""
    check_name(art.file, "artifact")
    if not art.url and not art.file.endswith(".whl"):
        raise LabError(f"artifact {art.file}: no url pinned and not a wheel; add its url to pins.toml")
    folder = cache_dir(artifact_dir())
    path = folder / art.file
    cached_sha = None
    if path.is_file():
        cached_sha = sha256_file(path)
        if cached_sha == art.sha256:
            return path
        progress(f"  cached {art.file} does not match its pin; fetching it again "
                 f"(the cached copy stays unless the new one matches)")
    from lab.backends.local import lab_id    # (local imports this module)
    # Named after the lab: a download cut short by kill -9 is removed at the next start.
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{art.file}.{lab_id()}-", suffix=".part")
    os.close(fd)
    partial: Path | None = Path(name)
    try:
        if art.url:
            progress(f"  fetching {art.url}")
            _download_url(art, partial)
        else:
            progress(f"  pip download {art.file}")
            _download_wheel(art, partial, progress)
        _check(partial, art, cached_sha)
        os.chmod(partial, 0o644)          # mkstemp makes it 0600; a build context reads it
        os.replace(partial, path)
        partial = None
    except OSError as exc:
        raise LabError(f"artifact {art.file}: cannot store it in {folder}: {exc.strerror or exc}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    return path


def fetch_all(target: Target, progress: Say = print) -> list[Path]:
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
