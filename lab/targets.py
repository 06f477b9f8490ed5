"""Targets: one pinned pyzmq/libzmq build each, loaded from the pin file (pins.toml)."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

PIN_FILE = Path(__file__).resolve().parent.parent / "pins.toml"
PIN_FILE_ENV = "ZMQLAB_PINS"          # another pin file (tests, trying a pin out) instead of pins.toml
# Target names become cache paths (venvs/<name>) and image tags, artifact files become cache
# paths (artifacts/<file>): one safe component each, never '.', '..' or anything with a '/'.
# Artifact files may also hold '+' and '~' (Debian versions: 4+b1, 128~dfsg).
SAFE_NAMES = {"target": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
              "artifact": re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,199}")}
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


def check_name(value: object, what: str = "target") -> str:
    """`value` if it is a safe single path component for a `what` ('target' or 'artifact'),
    else a one-line LabError: no '/', no '..', no leading '.' or '-', nothing outside the set."""
    text = value if isinstance(value, str) else ""
    if not SAFE_NAMES[what].fullmatch(text) or ".." in text:
        extra = " '+' '~'" if what == "artifact" else ""
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise LabError(f"{what} name {shown} is not allowed (letters, digits, '.' '_' '-'{extra}; "
                       f"starting with a letter or digit; no '..', no '/')")
    return text


def _target(entry: object, index: int, source: str) -> Target:
    if not isinstance(entry, dict):
        raise LabError(f"{source}: target #{index + 1} is not a table")
    where = f"{source}: target {entry.get('name', '#' + str(index + 1))!r}"
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise LabError(f"{where} lacks {', '.join(missing)}")
    try:
        check_name(entry["name"], "target")
    except LabError as exc:
        raise LabError(f"{source}: {exc}") from None
    if entry["kind"] not in KINDS:
        raise LabError(f"{where} has unknown kind {entry['kind']!r} (known: {', '.join(KINDS)})")
    if not isinstance(entry["draft"], bool):
        raise LabError(f"{where}: draft must be true or false")
    artifacts = []
    for art in entry.get("artifact", []):
        if not isinstance(art, dict) or "file" not in art or "sha256" not in art:
            raise LabError(f"{where}: every artifact needs a file and a sha256")
        try:
            check_name(art["file"], "artifact")
        except LabError as exc:
            raise LabError(f"{where}: {exc}") from None
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


def pin_file() -> Path:
    """pins.toml beside lab/, or the file $ZMQLAB_PINS names."""
    return Path(os.environ.get(PIN_FILE_ENV) or PIN_FILE)


def load_targets(path: Path | None = None) -> tuple[Target, ...]:
    path = pin_file() if path is None else Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabError(f"cannot read pin file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabError(f"{path} is not a text (UTF-8) pin file: undecodable byte at offset {exc.start}") from None
    if "\0" in text:
        raise LabError(f"{path} is not a text pin file: it holds NUL bytes")
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
