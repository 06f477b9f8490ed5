"""Results on disk: the only module of the core that does I/O.

Layout:  results/<run-id>/matrix.json
         results/<run-id>/cells/<target>__<pattern>__<transport>__<label>.json   (one verdict each)

Rules that keep results trustworthy after a crash or a Ctrl-C:
  * a document is validated against its schema before anything touches the disk;
  * every write goes to a temporary file in the same directory, is fsynced, then
    os.replace()d over the destination, so a reader sees the old file or the new one, never half;
  * nothing is deleted; a run directory is created fresh and never reused.
Every failure is a one-line LabError naming the path.
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from lab.errors import LabError
from lab.matrix import Matrix
from lab.schemas import SCHEMA_IDS, validate
from lab.verdicts import Verdict

RESULTS_ROOT = Path("results")
MATRIX_FILE = "matrix.json"
CELLS_DIR = "cells"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(now: datetime | None = None) -> str:
    """'20261127-114501-ab12': sorts by time; the random tail separates same-second runs."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def new_run_dir(root: str | Path = RESULTS_ROOT, now: datetime | None = None) -> Path:
    """Create and return a fresh results/<run-id>/ (never an existing one)."""
    root = Path(root)
    for _ in range(20):
        path = root / new_run_id(now)
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue                   # same second, same random tail: draw again
        except OSError as exc:
            raise LabError(f"cannot create results directory {path}: {exc.strerror}") from None
    raise LabError(f"cannot find an unused run id under {root}")


def latest_run_dir(root: str | Path = RESULTS_ROOT) -> Path:
    """The newest run directory that has a matrix (run ids sort by time)."""
    root = Path(root)
    if not root.is_dir():
        raise LabError(f"no results directory {root}")
    runs = sorted(p for p in root.iterdir() if (p / MATRIX_FILE).is_file())
    if not runs:
        raise LabError(f"no finished runs under {root}")
    return runs[-1]


# ---- writing ----------------------------------------------------------------------------

def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise LabError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:       # only our own temporary file, never the destination
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every filesystem allows it, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Documents that hold whole run reports (a full sweep's matrix.json passes 150 MB) are written
# without indentation: json.dumps(indent=...) runs Python's pure encoder, ~10x slower than the C
# one, and that cost the sweep's lab process seconds of CPU per cell (profiled). The small,
# hand-read documents keep their indentation; `python -m json.tool` shows the others.
COMPACT_KINDS = ("verdict", "matrix")


def write_json_atomic(path: str | Path, data: dict, kind: str, check: bool = True) -> Path:
    """Validate `data` as a `kind` document (unless `check` is False: a document made only of
    parts validated already), then write it atomically (old file kept on failure)."""
    if check:
        validate(kind, data, source=path)
    if kind in COMPACT_KINDS:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def cell_file_name(key: str) -> str:
    """'pyzmq-25.1.2/pubsub/tcp/default+poll' -> 'pyzmq-25.1.2__pubsub__tcp__default+poll.json'."""
    return key.replace("/", "__") + ".json"


def save_verdict(run_dir: str | Path, verdict: Verdict, sized: bool = False) -> Path:
    """cells/<key>.json; `sized` adds the cell's threads x msgs to the name, for runs that judge
    one cell at several sizes (reproduce: PUB/SUB 10x1000 and 100x1000 share a key)."""
    name = cell_file_name(verdict.cell.key)
    if sized:
        name = name[:-len(".json")] + "__%dx%d.json" % (verdict.cell.threads, verdict.cell.msgs)
    return write_json_atomic(Path(run_dir) / CELLS_DIR / name, verdict.to_dict(), "verdict")


def save_matrix(run_dir: str | Path, matrix: Matrix, check: bool = True, verdicts_checked: bool = False) -> Path:
    """`check` False for a sweep's interim matrix.json. `verdicts_checked`: each verdict was
    validated as it was saved (cells/*.json), so only the envelope is checked here (a full
    sweep's whole document took 6 s to check again). The matrix is remembered for the
    load_matrix() that usually follows (printing the table), which skips re-reading 150 MB."""
    data = matrix.to_dict()
    if check and verdicts_checked:
        validate("matrix", dict(data, verdicts=[]), source=Path(run_dir) / MATRIX_FILE)
    path = write_json_atomic(Path(run_dir) / MATRIX_FILE, data, "matrix", check=check and not verdicts_checked)
    _just_saved.clear()
    _just_saved[_stamp(path)] = matrix
    return path


# The matrix save_matrix() last wrote, by its file's identity and state: load_matrix() of the
# very same bytes returns it (a frozen object) instead of parsing and checking them again.
_just_saved: dict = {}


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


# ---- reading ----------------------------------------------------------------------------

def read_json(path: str | Path, kind: str) -> dict:
    """Load a `kind` document: missing, corrupt, foreign or wrong-version files are one-liners."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise LabError(f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise LabError(f"{path} is not valid JSON: {exc}") from None
    expected = SCHEMA_IDS[kind]
    found = data.get("schema") if isinstance(data, dict) else None
    if found != expected:
        family = expected.split("/")[0] + "/"
        if isinstance(found, str) and found.startswith(family):
            raise LabError(f"{path} is {found}, this lab reads {expected}")
        raise LabError(f"{path} is not a zmqlab {kind} file (schema: {found!r}, expected {expected})")
    validate(kind, data, source=path)
    return data


def _no_constant(name: str):
    # Python's json reads NaN/Infinity, which JSON does not have; a rate of NaN is a corrupt file.
    raise ValueError(f"{name} is not a JSON number")


def load_verdict(path: str | Path) -> Verdict:
    data = read_json(path, "verdict")
    try:
        return Verdict.from_dict(data)
    except LabError as exc:
        raise LabError(f"{path}: {exc}") from None


def load_verdicts(run_dir: str | Path) -> tuple[Verdict, ...]:
    """Every saved cell verdict of a run, in key order (possibly none while a run is young)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LabError(f"no results directory {run_dir}")
    cells = run_dir / CELLS_DIR
    files = sorted(cells.glob("*.json")) if cells.is_dir() else []
    return tuple(load_verdict(f) for f in files)


def load_matrix(path_or_dir: str | Path) -> Matrix:
    """From results/<run-id>/ or a matrix.json path."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / MATRIX_FILE
    elif not path.exists() and path.suffix != ".json":
        raise LabError(f"no results directory {path}")
    try:
        saved = _just_saved.get(_stamp(path))
    except OSError:
        saved = None
    if saved is not None:
        return saved
    data = read_json(path, "matrix")
    try:
        return Matrix.from_dict(data)
    except LabError as exc:
        raise LabError(f"{path}: {exc}") from None


# ---- output paths, checked before anything runs -----------------------------------------------

def _probe(folder: Path, what: str) -> None:
    """`what` (the start of the error) unless a file can be made and removed in `folder`."""
    probe = folder / (".zmqlab-write-probe-%d" % os.getpid())
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LabError("%s: %s (in %s)" % (what, exc.strerror or exc, folder)) from None


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """A file the task will write: not a directory, in an existing, writable directory (no
    directories are made for it), and replaceable if it exists. LabError otherwise."""
    text = os.fspath(path)
    what = "%s %s" % (flag, text or "''")
    if not text.strip():
        raise LabError("%s needs a file name" % flag)
    if "\0" in text:
        raise LabError("%s: a path cannot hold a NUL byte" % flag)
    target = Path(text)
    if target.is_dir() or text.endswith(os.sep):
        raise LabError("%s is a directory; give a file name" % what)
    if target.exists() and not target.is_file():
        raise LabError("%s is not a regular file" % what)
    folder = target.parent
    if not folder.is_dir():
        raise LabError("%s: no such directory %s" % (what, folder))
    _probe(folder, "cannot write %s" % what)
    if target.exists() and not os.access(target, os.W_OK) and not os.access(folder, os.W_OK):
        raise LabError("%s: not writable" % what)
    return target


def check_output_dir(path: str | os.PathLike, flag: str, noun: str = "results directory") -> Path:
    """A folder the task will write into (made if missing, with its parents): an existing,
    writable directory, or one creatable under its nearest existing ancestor. LabError
    otherwise; nothing is created here."""
    text = os.fspath(path)
    if not text.strip():
        raise LabError("%s needs a directory" % flag)
    if "\0" in text:
        raise LabError("%s: a path cannot hold a NUL byte" % flag)
    folder = Path(text)
    if folder.exists():
        if not folder.is_dir():
            raise LabError("%s %s is not a directory" % (flag, text))
        _probe(folder, "cannot write to %s %s" % (noun, folder))
        return folder
    ancestor = folder.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise LabError("cannot create %s %s: %s is not a directory" % (noun, folder, ancestor))
    _probe(ancestor, "cannot create %s %s" % (noun, folder))
    return folder
