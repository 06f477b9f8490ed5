"""Targets: one pinned pyzmq/libzmq build each, loaded from the pin file (pins.toml)."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

PIN_FILE = Path(__file__).resolve().parent.parent / "pins.toml"
KINDS = ("wheel", "bundled-sdist", "libzmq-source", "debian-system")
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


@dataclass(frozen=True)
class Artifact:
    file: str
    sha256: str
    url: str = ""


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    pyzmq: str
    libzmq: str
    draft: bool
    suite: str
    python: str
    artifacts: tuple[Artifact, ...] = ()
    base: str = ""        # a public base image to use instead of the debootstrapped suite
    broken: str = ""      # why this target cannot be built here, if it cannot

    @property
    def wheel(self) -> Artifact | None:
        """The prebuilt wheel, for kind 'wheel' (what the local backend installs)."""
        return next((a for a in self.artifacts if a.file.endswith(".whl")), None)


_REQUIRED = ("name", "kind", "pyzmq", "libzmq", "draft", "suite", "python")


def _target(entry: object, index: int, source: str) -> Target:
    if not isinstance(entry, dict):
        raise LabError(f"{source}: target #{index + 1} is not a table")
    where = f"{source}: target {entry.get('name', '#' + str(index + 1))!r}"
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise LabError(f"{where} lacks {', '.join(missing)}")
    if entry["kind"] not in KINDS:
        raise LabError(f"{where} has unknown kind {entry['kind']!r} (known: {', '.join(KINDS)})")
    if not isinstance(entry["draft"], bool):
        raise LabError(f"{where}: draft must be true or false")
    artifacts = []
    for art in entry.get("artifact", []):
        if not isinstance(art, dict) or "file" not in art or "sha256" not in art:
            raise LabError(f"{where}: every artifact needs a file and a sha256")
        sha = str(art["sha256"])
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise LabError(f"{where}: artifact {art['file']!r} has a malformed sha256")
        artifacts.append(Artifact(str(art["file"]), sha, str(art.get("url", ""))))
    unknown = set(entry) - set(_REQUIRED) - {"artifact", "base", "broken"}
    if unknown:
        raise LabError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    return Target(
        name=str(entry["name"]), kind=entry["kind"], pyzmq=str(entry["pyzmq"]),
        libzmq=str(entry["libzmq"]), draft=entry["draft"], suite=str(entry["suite"]),
        python=str(entry["python"]), artifacts=tuple(artifacts),
        base=str(entry.get("base", "")), broken=str(entry.get("broken", "")),
    )


def parse_pins(text: str, source: str = "pins.toml") -> tuple[Target, ...]:
    """Parse pin-file text into targets; any defect is a one-line LabError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabError(f"{source} is malformed: {exc}") from None
    entries = data.get("target")
    if not isinstance(entries, list) or not entries:
        raise LabError(f"{source} has no [[target]] entries")
    targets = tuple(_target(e, i, source) for i, e in enumerate(entries))
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise LabError(f"{source}: target {t.name!r} is listed twice")
        seen.add(t.name)
    return targets


def load_targets(path: Path = PIN_FILE) -> tuple[Target, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabError(f"cannot read pin file {path}: {exc.strerror}") from None
    return parse_pins(text, source=str(path))


def select(targets: tuple[Target, ...], names: str | list[str] | tuple[str, ...]) -> tuple[Target, ...]:
    """Pick targets by name ('all', a comma list, or a sequence); unknown names are an error."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names or list(names) == ["all"]:
        return targets
    by_name = {t.name: t for t in targets}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise LabError(f"unknown target {unknown[0]!r} (known: {', '.join(by_name)})")
    return tuple(by_name[n] for n in names)
