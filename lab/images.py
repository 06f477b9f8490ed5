"""Build the Docker images the selected targets need, offline, through the Docker SDK.

One image per target, tagged zmqlab-target:<target-name> (lab.engine.image_name), built from
the recipe in docker/<kind>/ with a build context of that recipe plus the target's pinned artifacts
(fetched and hash-checked by the host, lab/artifacts.py). Builds run with network "none",
so a recipe that tries to download anything fails instead of silently depending on it.

An image carries org.zmqlab.recipe-hash = sha256(recipe files + pin entry): when an image
with the current hash exists the target is skipped, so a second call costs a few engine
look-ups. After each build the image is checked the way the Docker backend will run it, in
the same sandbox (lab.engine.sandbox: user 65534, no network, no capabilities, read-only root,
tmpfs /tmp, pids and memory limits) and with the lab's run/pid labels, so an orphan sweep finds
a verification container a killed build left behind: pyzmq version, libzmq version and draft
support must match the pin, or the image is removed and the target reported failed.

Contract of every image: /opt/venv/bin/python exists and `import zmq` works in it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import docker
import docker.errors

from lab import base_image, engine
from lab.artifacts import cache_root, fetch_all, link_into
from lab.base_image import get_image
from lab.engine import LABEL, LABEL_NAMESPACE, TARGET_REPO, image_name, transient_retry
from lab.errors import LabError
from lab.targets import Target

Say = Callable[[str], None]          # where a line of progress goes (print, lab.session.say)
RECIPES = Path(__file__).resolve().parent.parent / "docker"
HASH_LABEL = engine.RECIPE_LABEL      # org.zmqlab.recipe-hash
COMPILED_KINDS = ("bundled-sdist", "libzmq-source")   # these need the builder (compilers) stage
VERIFY_CODE = "import zmq; print(zmq.pyzmq_version(), zmq.zmq_version(), zmq.has('draft'))"
VERIFY_TIMEOUT_S = 60


@dataclass(frozen=True)
class BuildResult:
    target: str
    status: str      # 'built' | 'skipped' | 'failed' | 'broken'
    seconds: float
    detail: str


def recipe_dir(target: Target) -> Path:
    return RECIPES / target.kind


def recipe_hash(target: Target) -> str:
    """sha256 over the recipe files of the target's kind and its whole pin entry."""
    folder = recipe_dir(target)
    if not folder.is_dir():
        raise LabError(f"target {target.name!r}: no recipe folder {folder}")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    pin = json.dumps(dataclasses.asdict(target), sort_keys=True)
    digest.update(pin.encode())
    return digest.hexdigest()


def expected_verify_line(target: Target) -> str:
    return f"{target.pyzmq} {target.libzmq} {target.draft}"


def image_ready(client: docker.DockerClient, target: Target) -> bool:
    """True when zmqlab-target:<name> exists and was built from the current recipe and pin."""
    image = get_image(client, image_name(target))
    return image is not None and image.labels.get(HASH_LABEL) == recipe_hash(target)


SOURCE_LABEL = f"{LABEL}.base.source"


def _fits(image, wanted: str, source: str) -> bool:
    """Built from this recipe, in this namespace, on a base of the source asked for (auto: any;
    images from before base labels were bootstrapped or pinned)."""
    labels = image.labels or {}
    return (labels.get(HASH_LABEL) == wanted and labels.get(LABEL_NAMESPACE, "") == engine.image_namespace()
            and (source == "auto" or labels.get(SOURCE_LABEL, "bootstrap") in (source, "pinned")))


def _reuse_existing(client: docker.DockerClient, target: Target, wanted: str, source: str = "auto") -> bool:
    """Is an image with this recipe hash already there? Re-tag it if only the tag was lost."""
    image = get_image(client, image_name(target))
    if image is not None and _fits(image, wanted, source):
        return True
    matches = transient_retry(client.images.list)(filters={"label": f"{HASH_LABEL}={wanted}"})
    matches = [m for m in matches if _fits(m, wanted, source)]
    if matches:
        matches[0].tag(TARGET_REPO, target.name)
        return True
    return False


def _context(target: Target, artifacts: list[Path], where: Path) -> Path:
    ctx = where / "context"
    shutil.copytree(recipe_dir(target), ctx)
    link_into(artifacts, ctx / "artifacts")
    return ctx


def _run_build(client: docker.DockerClient, target: Target, ctx: Path, buildargs: dict[str, str],
               labels: dict[str, str], log_path: Path, progress: Say, nocache: bool = False) -> set[str]:
    """Stream a classic-builder build; return the step image ids it printed; raise LabError
    with the engine's error on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    error = ""
    tail: list[str] = []
    step_ids: set[str] = set()
    with open(log_path, "w", encoding="utf-8") as log:
        stream = client.api.build(path=str(ctx), tag=image_name(target), buildargs=buildargs,
                                  labels=labels, network_mode="none", pull=False, rm=True,
                                  forcerm=True, nocache=nocache, decode=True)
        for chunk in stream:
            text = chunk.get("stream", "")
            if text:
                log.write(text)
                for line in text.splitlines():
                    if line.strip():
                        tail = (tail + [line.strip()])[-5:]
                    if line.startswith(" ---> ") and " " not in line[6:].strip():
                        step_ids.add(line[6:].strip()[:12])
                    if line.startswith("Step "):
                        progress(f"  [{target.name}] {line[:110]}")
            if "errorDetail" in chunk or "error" in chunk:
                error = chunk.get("error") or chunk["errorDetail"].get("message", "")
                log.write(f"ERROR: {error}\n")
    if error:
        context_line = next((l for l in reversed(tail) if "error" in l.lower()), tail[-1] if tail else "")
        raise LabError(f"build failed: {error.strip()[:200]} | {context_line[:200]} (log: {log_path})")
    return step_ids


def verify_image(client: docker.DockerClient, target: Target, run_id: str | None = None) -> str:
    """Run the version check the way the backend runs scenarios (same sandbox, the lab's
    labels under `run_id`); return its output line."""
    run_id = run_id or f"images-{os.getpid()}"
    name = f"zmqlab-{run_id}-verify-{target.name}-{uuid.uuid4().hex[:6]}"
    container = transient_retry(client.containers.create)(
        image_name(target), [engine.PYTHON, "-c", VERIFY_CODE], name=name,
        labels=engine.run_labels(run_id), detach=True, **engine.sandbox())
    try:
        container.start()
        status = container.wait(timeout=VERIFY_TIMEOUT_S)
        out = container.logs(stdout=True, stderr=True).decode(errors="replace").strip()
    finally:
        container.remove(force=True)
    if status.get("StatusCode") != 0:
        raise LabError(f"verify exited {status.get('StatusCode')}: {out.splitlines()[-1] if out else 'no output'}")
    return out.splitlines()[-1] if out else ""


def _remove_build_stages(client: docker.DockerClient, target: Target, step_ids: set[str]) -> None:
    """Remove the untagged build-stage images of this build (compilers, sources: big).

    Only images this build printed (" ---> <id>") and that the final image does not
    descend from; a blanket prune could hit another build's stage in its short window
    between the last build-stage step and COPY --from."""
    image = get_image(client, image_name(target))
    if image is None:
        return
    keep = {h.get("Id", "").removeprefix("sha256:")[:12] for h in image.history()}
    for short_id in step_ids - keep:
        stage = get_image(client, short_id)
        if stage is None or stage.tags:   # a FROM line prints the base's id too: never remove bases
            continue
        try:
            client.images.remove(stage.id)   # also removes its untagged, otherwise unused parents
        except docker.errors.APIError:
            pass  # shared with a cached build or already gone: only disk space


def _drop_replaced(client: docker.DockerClient, previous) -> None:
    """The image a rebuild replaced is left untagged; remove it unless something still uses it."""
    if previous is None:
        return
    stale = get_image(client, previous.id)
    if stale is not None and not stale.tags:
        try:
            client.images.remove(stale.id)
        except docker.errors.APIError:
            pass  # a container still uses it: leave it


def build_one(client: docker.DockerClient, target: Target, force: bool, bases_done: set[str],
              rebuild_base: bool, progress: Say, nocache: bool = False,
              source: str = "auto") -> BuildResult:
    start = time.monotonic()
    took = lambda: round(time.monotonic() - start, 1)  # noqa: E731
    if target.broken:
        return BuildResult(target.name, "broken", 0.0, target.broken)
    try:
        wanted = recipe_hash(target)
        if not force and _reuse_existing(client, target, wanted, source):
            progress(f"{target.name}: up to date ({image_name(target)})")
            return BuildResult(target.name, "skipped", took(), "image up to date")
        progress(f"{target.name}: building {image_name(target)} ({target.kind}, {target.suite})")
        previous = get_image(client, image_name(target))
        artifacts = fetch_all(target, progress)
        bases = base_image.resolve(client, target, source, target.kind in COMPILED_KINDS,
                                   rebuild=rebuild_base, done=bases_done, progress=progress)
        progress(f"  [{target.name}] on {bases.base} ({bases.source}"
                 f"{', builder ' + bases.builder if bases.builder != bases.base else ''})")
        buildargs = {"BASE": bases.base, "BUILDER": bases.builder, "DRAFT": "1" if target.draft else "",
                     "PYZMQ": target.pyzmq, "LIBZMQ": target.libzmq}
        labels = {LABEL: "1", HASH_LABEL: wanted, f"{LABEL}.target": target.name, **bases.labels}
        if engine.image_namespace():
            labels[LABEL_NAMESPACE] = engine.image_namespace()
        cache = cache_root()
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix="context-") as tmp:
            ctx = _context(target, artifacts, Path(tmp))
            if recipe_hash(target) != wanted:  # the label must describe the files actually sent
                raise LabError("the recipe changed while the build was being prepared; run it again")
            step_ids = _run_build(client, target, ctx, buildargs, labels,
                                  cache / "logs" / f"{target.name}.log", progress, nocache)
        _remove_build_stages(client, target, step_ids)
        line = verify_image(client, target)
        if line != expected_verify_line(target):
            client.images.remove(image_name(target), force=True)
            raise LabError(f"image reports {line!r}, pin says {expected_verify_line(target)!r}; image removed")
        _drop_replaced(client, previous)
        progress(f"{target.name}: built in {took()} s on {bases.base}, verified: {line}")
        return BuildResult(target.name, "built", took(), line)
    except LabError as exc:
        progress(f"{target.name}: FAILED: {exc}")
        return BuildResult(target.name, "failed", took(), str(exc))
    except docker.errors.DockerException as exc:
        progress(f"{target.name}: FAILED (engine): {exc}")
        return BuildResult(target.name, "failed", took(), f"engine error: {str(exc)[:300]}")


def build_images(client: docker.DockerClient, targets: Iterable[Target], rebuild_base: bool = False,
                 progress: Say = print, nocache: bool = False,
                 base_source: str | None = None) -> list[BuildResult]:
    """Build (or skip) every target's image; --base re-makes (re-pulls) bases and rebuilds on them.
    nocache: no engine layer cache either (every step runs again: a true build from nothing).
    base_source: auto/registry/bootstrap (None: $ZMQLAB_BASE_SOURCE, else auto; lab/base_image.py)."""
    source = base_image.base_source(base_source)
    engine.image_namespace()            # a malformed $ZMQLAB_IMAGE_NAMESPACE stops here
    bases_done: set[str] = set()
    return [build_one(client, t, force=rebuild_base, bases_done=bases_done,
                      rebuild_base=rebuild_base, progress=progress, nocache=nocache, source=source)
            for t in targets]
