"""The fault injector's sidecar image, zmqlab-sidecar:<suite> (docs/faults.md): the lab's own base
zmqlab-base:<suite> plus Debian's iptables and iproute2, built offline from docker/sidecar/
the way the debian-system targets are (the host fetches and hash-checks the pinned .debs,
lab/artifacts.py; dpkg installs them in a build with network "none").

Built once and cached: the image carries org.zmqlab.recipe-hash (sha256 of the recipe folder,
Dockerfile and debs.toml), and an image with the current hash in this namespace is used as is.
$ZMQLAB_IMAGE_NAMESPACE=<ns> builds <ns>-zmqlab-sidecar:<suite> on <ns>-zmqlab-base:<suite>
(lab.engine), never touching the real images. Images are never removed here.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from lab import base_image, engine
from lab.artifacts import cache_root, fetch, link_into
from lab.base_image import get_image
from lab.engine import LABEL, LABEL_NAMESPACE, RECIPE_LABEL
from lab.errors import LabError
from lab.targets import Artifact

Say = Callable[[str], None]
SUITE = "bookworm"
RECIPE = Path(__file__).resolve().parent.parent / "docker" / "sidecar"


def image_ref(suite: str = SUITE) -> str:
    ns = engine.image_namespace()
    return f"{ns + '-' if ns else ''}zmqlab-sidecar:{suite}"


def debs() -> list[Artifact]:
    """The pinned .debs of docker/sidecar/debs.toml."""
    try:
        entries = tomllib.loads((RECIPE / "debs.toml").read_text(encoding="utf-8"))["artifact"]
        return [Artifact(e["file"], e["sha256"], e["url"]) for e in entries]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"{RECIPE / 'debs.toml'}: not a list of [[artifact]] file/sha256/url ({exc})") from None


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in RECIPE.rglob("*") if p.is_file()):
        digest.update(path.relative_to(RECIPE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _ready(image, wanted: str) -> bool:
    labels = (image.labels or {}) if image is not None else {}
    return labels.get(RECIPE_LABEL) == wanted and labels.get(LABEL_NAMESPACE, "") == engine.image_namespace()


def ensure_image(client: docker.DockerClient, progress: Say = print) -> str:
    """The sidecar image's ref, built first when missing or made from another recipe."""
    ref, wanted = image_ref(), recipe_hash()
    if _ready(get_image(client, ref), wanted):
        return ref
    progress(f"{ref}: building (iptables, iproute2 from pinned Debian .debs, offline)")
    base_image.ensure_base(client, SUITE, progress=progress)      # imports or bootstraps the base
    files = [fetch(art, progress) for art in debs()]
    labels = {LABEL: "1", RECIPE_LABEL: wanted, f"{LABEL}.role": "sidecar"}
    if engine.image_namespace():
        labels[LABEL_NAMESPACE] = engine.image_namespace()
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="context-sidecar-") as tmp:
        ctx = Path(tmp) / "context"
        shutil.copytree(RECIPE, ctx)
        link_into(files, ctx / "artifacts")
        if recipe_hash() != wanted:     # the label must describe the files actually sent
            raise LabError("the sidecar recipe changed while its build was being prepared; run it again")
        try:
            engine.transient_retry(client.images.build)(
                path=str(ctx), tag=ref, buildargs={"BASE": base_image.base_ref(SUITE)}, labels=labels,
                network_mode="none", pull=False, rm=True, forcerm=True)
        except docker.errors.BuildError as exc:
            last = next((str(c.get("stream") or c.get("error") or "").strip()
                         for c in reversed(list(exc.build_log)) if c.get("stream") or c.get("error")), "")
            raise LabError(f"building {ref} failed: {exc.msg} | {last[:200]}") from None
    if not _ready(get_image(client, ref), wanted):
        raise LabError(f"building {ref} reported success but the image is missing")
    progress(f"{ref}: built")
    return ref
