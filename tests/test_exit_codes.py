"""The exit-code contract of `./zmqlab`, task by task (see tasks.py and lab/cli.py):

  0 fine, 1 the thing checked failed or got worse, 2 usage or input error -- ONE line on
  stderr, no traceback, including what Invoke's own parser and type conversion reject --,
  130/143 interrupted.

TABLE holds bad inputs for every task. Each must fail before any scenario runs and before any
Docker call: the cases run with a fresh, empty cache (a case that got as far as making a venv
would leave one), no reachable Docker engine, `--backend local` where a backend is named, and
the test checks at the end that nothing was created. The subprocesses run in a small pool.
"""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = ["--backend", "local"]
T = "pyzmq-25.1.2"

# (argv, expected fragment of the one stderr line, extra environment)
# Placeholders: {dir} an existing empty folder, {file} a regular file, {corrupt} a results
# folder with a broken matrix.json, {out} a folder results may go to, {pins_*} pin files.
TABLE: list[tuple[list[str], str, dict[str, str]]] = [
    # --- Invoke's own parser: unknown tasks and options ---
    (["nosuchtask"], "unknown task 'nosuchtask'", {}),
    (["scenari"], "unknown task 'scenari'", {}),
    (["--help", "nosuchtask"], "unknown task 'nosuchtask'", {}),
    (["--nope"], "unknown option '--nope'", {}),
    (["scenario", "--", "--threads", "2"], "nothing after '--'", {}),
    # --- scenario: type conversion ---
    (["scenario", "--threads", "abc"], "--threads expects a whole number, got 'abc'", {}),
    (["scenario", "--msgs", "1e3"], "--msgs expects a whole number, got '1e3'", {}),
    (["scenario", "--repeat", "many"], "--repeat expects a whole number, got 'many'", {}),
    (["scenario", "--threads", "1e20"], "--threads expects a whole number", {}),
    (["scenario", "--stall", "abc"], "--stall expects a number, got 'abc'", {}),
    # --- scenario: parser ---
    (["scenario", "--tread", "5"], "scenario: unknown flag '--tread'", {}),
    (["scenario", "--threads"], "--threads needs a value", {}),
    (["scenario", "--poll", "yes"], "unexpected argument 'yes'", {}),
    (["scenario", "--threads", "1", "--threads", "2"], "unexpected argument '2'", {}),
    # --- scenario: values ---
    (["scenario", "--threads", "100000000000000000000", *LOCAL], "--threads must be at most", {}),
    (["scenario", "--threads", "0", *LOCAL], "threads must be at least 1", {}),
    (["scenario", "--repeat", "0", *LOCAL], "--repeat must be at least 1", {}),
    (["scenario", "--threads", "10000", "--msgs", "100000000", *LOCAL], "too large to bound", {}),
    (["scenario", "--stall", "nan", *LOCAL], "--stall must be a finite number", {}),
    (["scenario", "--stall", "1e308", *LOCAL], "--stall must be at most", {}),
    (["scenario", "--sleep", "-1", *LOCAL], "--sleep must not be negative", {}),
    (["scenario", "--timeout", "-5", *LOCAL], "--timeout must be a positive number", {}),
    (["scenario", "--timeout", "0.01", *LOCAL], "below what a run needs", {}),
    (["scenario", "--pattern", "foo", *LOCAL], "unknown pattern 'foo'", {}),
    (["scenario", "--transport", "udp", *LOCAL], "unknown transport 'udp'", {}),
    (["scenario", "--target", "pyzmq-0.0", *LOCAL], "unknown target 'pyzmq-0.0'", {}),
    (["scenario", "--target", "a,b", *LOCAL], "--target takes one target name", {}),
    (["scenario", "--target", "", *LOCAL], "--target takes one target name", {}),
    (["scenario", "--target", "../..", *LOCAL], "unknown target '../..'", {}),
    (["scenario", "--backend", "podman"], "unknown backend 'podman'", {}),
    (["scenario", "--sync", "xpub", "--pattern", "pair", *LOCAL], "only applies to pubsub", {}),
    (["scenario", "--inject", "drop:9999", *LOCAL], "outside the run's threads/msgs", {}),
    (["scenario", "--json", "{dir}", *LOCAL], "is a directory", {}),
    (["scenario", "--json", "/nonexistent-zmqlab/v.json", *LOCAL], "no such directory", {}),
    (["scenario", "--json", "", *LOCAL], "--json needs a file name", {}),
    # --- scenario: topologies and pairs of two pins ---
    (["scenario", "--topology", "bogus", *LOCAL], "unknown topology 'bogus' (known: threads, processes, containers)", {}),
    (["scenario", "--sender-target", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["scenario", "--receiver-target", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["scenario", "--topology", "containers", "--transport", "inproc", *LOCAL], "topology containers needs tcp, not inproc", {}),
    (["scenario", "--topology", "processes", "--transport", "inproc", *LOCAL], "inproc cannot cross processes", {}),
    (["scenario", "--sender-target", "pyzmq-27.3.0", "--transport", "ipc", *LOCAL],
     "run the pair in two containers over tcp, not ipc", {}),
    (["scenario", "--sender-target", "pyzmq-27.3.0", "--topology", "processes", *LOCAL],
     "run the pair in two containers, not --topology processes", {}),
    (["scenario", "--topology", "all", "--json", "{out}/v.json", *LOCAL], "--json holds one verdict", {}),
    # --- the pin file and the cache ---
    (["scenario", *LOCAL], "not a text (UTF-8) pin file", {"ZMQLAB_PINS": "{pins_binary}"}),
    (["scenario", *LOCAL], "is malformed", {"ZMQLAB_PINS": "{pins_garbage}"}),
    (["scenario", *LOCAL], "target name 'a/b' is not allowed", {"ZMQLAB_PINS": "{pins_slash}"}),
    (["scenario", "--target", "..", *LOCAL], "target name '..' is not allowed", {"ZMQLAB_PINS": "{pins_dotdot}"}),
    (["targets"], "cannot read pin file", {"ZMQLAB_PINS": "/nonexistent-zmqlab/pins.toml"}),
    (["targets"], "not a text (UTF-8) pin file", {"ZMQLAB_PINS": "{pins_binary}"}),
    (["scenario", "--target", T, *LOCAL], "cannot use the cache directory", {"XDG_CACHE_HOME": "/proc/zmqlab-no-cache"}),
    (["scenario", "--target", T, *LOCAL], "cannot use the cache directory", {"XDG_CACHE_HOME": "{file}/sub"}),
    # --- matrix ---
    (["matrix", "--repeat", "0", *LOCAL], "--repeat must be at least 1", {}),
    (["matrix", "--patterns", "foo", *LOCAL], "unknown pattern 'foo'", {}),
    (["matrix", "--targets", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["matrix", "--poll", "sometimes", *LOCAL], "unknown poll mode 'sometimes'", {}),
    (["matrix", "--sync", "bogus", *LOCAL], "unknown sync mode 'bogus'", {}),
    (["matrix", "--variants", "bogus", *LOCAL], "unknown variant 'bogus'", {}),
    (["matrix", "--out", "/proc/zmqlab-nope", *LOCAL], "cannot create results directory", {}),
    (["matrix", "--out", "{file}", *LOCAL], "is not a directory", {}),
    (["matrix", "--backend", "podman"], "unknown backend 'podman'", {}),
    (["matrix", "--markdown", "x"], "matrix: unknown flag '--markdown'", {}),
    (["matrix", "--topology", "bogus", *LOCAL], "unknown topology 'bogus'", {}),
    (["matrix", "--topology", "containers", "--transports", "inproc", *LOCAL],
     "topology containers needs tcp, which is not among the transports (inproc)", {}),
    (["matrix", "--sender-target", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["matrix", "--receiver-target", T, "--topology", "threads,processes", *LOCAL],
     "run the pair in two containers, not --topology threads,processes", {}),
    # --- remote engines (--engine, DOCKER_HOST): one line naming the engine and what failed ---
    (["matrix", "--engine", "ftp://x", *LOCAL], "--engine 'ftp://x' is not an engine URL", {}),
    (["images", "--engine", "ssh://"], "--engine 'ssh://' is not an engine URL", {}),
    (["sweep-run", "--target", T, "--out", "{out}", "--engine", "root@host"], "is not an engine URL", {}),
    (["matrix", "--engine", "ssh://root@127.0.0.1:1", "--backend", "docker", "--out", "{out}"],
     "no Docker engine answers at ssh://root@127.0.0.1:1: Connection refused", {}),
    (["matrix", "--out", "{out}"], "no Docker engine answers at ssh://root@127.0.0.1:1", {"DOCKER_HOST": "ssh://root@127.0.0.1:1"}),
    # --- interop ---
    (["interop", *LOCAL], "interop runs every pair in two containers: it needs the docker backend, not local", {}),
    (["interop", "--jobs", "0"], "--jobs must be at least 1", {}),
    (["interop", "--jobs", "x"], "--jobs expects a whole number", {}),
    (["interop", "--targets", "nosuch"], "unknown target 'nosuch'", {}),
    (["interop", "--patterns", "foo"], "unknown pattern 'foo'", {}),
    (["interop", "--sync", "xpub", "--patterns", "pair"], "only applies to pubsub", {}),
    (["interop", "--out", "/proc/zmqlab-nope", "--backend", "docker"], "cannot create results directory", {}),
    (["interop", "--backend", "podman"], "unknown backend 'podman'", {}),
    # --- reproduce ---
    (["reproduce", "--repeat", "x"], "--repeat expects a whole number", {}),
    (["reproduce", "--targets", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["reproduce", "--markdown", "{dir}", *LOCAL], "is a directory", {}),
    (["reproduce", "--out", "/proc/zmqlab-nope", *LOCAL], "cannot create results directory", {}),
    (["reproduce", "--configs", "pubsub-10x100", *LOCAL], "unknown configuration 'pubsub-10x100'", {}),
    (["matrix", "--resume", "/nonexistent-zmqlab", *LOCAL], "has no matrix.json", {}),
    # --- images, targets, test, bench ---
    (["images", "--targets", "nosuch"], "unknown target 'nosuch'", {}),
    (["images", "--base", "maybe"], "images: unexpected argument 'maybe'", {}),
    (["targets", "extra"], "targets: unexpected argument 'extra'", {}),
    (["test", "--nope"], "test: unknown flag '--nope'", {}),
    (["test", "-k"], "needs a value", {}),
    (["bench", "--backend", "podman"], "unknown backend 'podman'", {}),
    (["bench", "--cold"], "--cold applies to --matrix only", {}),
    # --- compare ---
    (["compare"], "compare is missing BASE and NEW", {}),
    (["compare", "{dir}"], "compare is missing NEW", {}),
    (["compare", "/nonexistent-zmqlab", T], "neither a results directory nor a pinned target", {}),
    (["compare", "{dir}", T], "not one of each", {}),
    (["compare", "{corrupt}", "{corrupt}"], "not valid JSON", {}),
    (["compare", T, T, *LOCAL], "compare two different targets", {}),
    (["compare", T, "pyzmq-27.3.0", "--threads", "abc"], "--threads expects a whole number", {}),
    (["compare", "{corrupt}", "{corrupt}", "--markdown", "{dir}"], "is a directory", {}),
    (["compare", "{corrupt}", "{corrupt}", "--markdwon", "x"], "compare: unknown flag '--markdwon'", {}),
    # --- upgrade-check ---
    (["upgrade-check"], "upgrade-check is missing FROM and TO", {}),
    (["upgrade-check", "--from", T], "upgrade-check is missing TO", {}),
    (["upgrade-check", "--from", T, "--to", "pyzmq-27.3.0", "--max-repeat", "x"], "--max-repeat expects a whole number", {}),
    (["upgrade-check", "--from", T, "--to", "nosuch", *LOCAL], "unknown target 'nosuch'", {}),
    (["upgrade-check", "--from", T, "--to", "pyzmq-27.3.0", "--markdown", "/nonexistent-zmqlab/m.md", *LOCAL],
     "no such directory", {}),
    (["upgrade-check", "--from", T, "--to", "pyzmq-27.3.0", "--out", "{file}", *LOCAL], "is not a directory", {}),
    # --- baseline, report ---
    (["baseline"], "baseline is missing RESULTS", {}),
    (["baseline", "--results", "{corrupt}"], "not valid JSON", {}),
    (["baseline", "--results", "{corrupt}", "--path", "/nonexistent-zmqlab/x.json"], "no such directory", {}),
    (["report"], "report is missing RESULTS", {}),
    (["report", "--results", "/nonexistent-zmqlab"], "no results directory", {}),
    (["report", "--results", "{corrupt}"], "not valid JSON", {}),
    (["report", "--results", "{corrupt}", "--out", "{file}"], "is not a directory", {}),
    (["report", "--results", "{corrupt}", "--html=yes"], "unexpected argument 'yes'", {}),
    # --- sweeps ---
    (["sweep-plan", "--targets", "nosuch"], "unknown target 'nosuch'", {}),
    (["sweep-plan", "extra"], "sweep-plan: unexpected argument 'extra'", {}),
    (["sweep-run"], "sweep-run is missing TARGET and OUT", {}),
    (["sweep-run", "--target", "nosuch", "--out", "{out}", *LOCAL], "unknown target 'nosuch'", {}),
    (["sweep-run", "--target", "%s,pyzmq-27.3.0" % T, "--out", "{out}", *LOCAL], "takes exactly one target", {}),
    (["sweep-run", "--target", T, "--out", "/proc/zmqlab-nope", *LOCAL], "cannot create results directory", {}),
    (["sweep-merge"], "sweep-merge is missing DIRS and OUT", {}),
    (["sweep-merge", ",", "--out", "{out}"], "needs at least one results directory", {}),
    (["sweep-merge", "{corrupt}", "--out", "{out}"], "not valid JSON", {}),
    (["sweep-gate", "--markdwon", "x"], "sweep-gate: unknown flag '--markdwon'", {}),
    (["sweep-gate"], "sweep-gate is missing RESULTS", {}),
    (["sweep-gate", "--results", "/nonexistent-zmqlab"], "no results directory", {}),
    (["sweep-gate", "--results", "{corrupt}"], "not valid JSON", {}),
    (["sweep-gate", "--results", "{corrupt}", "--markdown", "{dir}"], "is a directory", {}),
]

# Asked of the lab with no error: the launcher's own surface keeps working.
FINE = [["--list"], ["--help", "scenario"], ["scenario", "--help"], ["--version"]]


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exit-codes")
    p = {"dir": root / "empty", "file": root / "plain-file", "out": root / "out",
         "corrupt": root / "corrupt", "cache": root / "cache", "tmp": root / "tmp",
         "pycache": root / "pycache"}
    for d in ("dir", "out", "cache", "tmp"):
        p[d].mkdir()
    p["file"].write_text("not a folder\n")
    run = p["corrupt"] / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "matrix.json").write_text('{"schema": "zmqlab.matrix/1", "verdicts": [')
    pins = {"binary": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00garbage",
            "garbage": b"[[target]\nname = = 'x'\n",
            "slash": b'[[target]]\nname = "a/b"\nkind = "wheel"\npyzmq = "1"\nlibzmq = "4"\n'
                     b'draft = false\nsuite = "bookworm"\npython = "3.11"\n',
            "dotdot": b'[[target]]\nname = ".."\nkind = "wheel"\npyzmq = "1"\nlibzmq = "4"\n'
                      b'draft = false\nsuite = "bookworm"\npython = "3.11"\n'}
    for name, data in pins.items():
        p["pins_" + name] = root / ("pins-%s.toml" % name)
        p["pins_" + name].write_bytes(data)
    return p


def _fill(text: str, place: dict[str, Path]) -> str:
    return text.format(**{k: str(v) for k, v in place.items()}) if "{" in text else text


def _run(argv: list[str], env_extra: dict[str, str], place: dict[str, Path]) -> subprocess.CompletedProcess:
    # Bytecode goes to a folder of this test (compiled once, not in every case; the tree stays clean).
    env = dict(os.environ, XDG_CACHE_HOME=str(place["cache"]), TMPDIR=str(place["tmp"]),
               DOCKER_HOST="unix:///nonexistent-zmqlab-docker.sock", PYTHONPYCACHEPREFIX=str(place["pycache"]))
    for name in ("ZMQLAB_PINS", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env.update({k: _fill(v, place) for k, v in env_extra.items()})
    return subprocess.run(["./zmqlab", *[_fill(a, place) for a in argv]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def outcomes(place):
    """Every case of TABLE and FINE, a few at a time, after one call that compiles the modules."""
    jobs = [(tuple(argv), env) for argv, _, env in TABLE] + [(tuple(argv), {}) for argv in FINE]
    _run(["--list"], {}, place)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        done = list(pool.map(lambda job: _run(list(job[0]), job[1], place), jobs))
    return {(job[0], tuple(sorted(job[1].items()))): proc for job, proc in zip(jobs, done)}


def _key(argv, env):
    return tuple(argv), tuple(sorted(env.items()))


def test_the_table_is_large_and_covers_every_task():
    from invoke import Collection

    import tasks
    names = set(Collection.from_module(tasks).task_names)
    covered = {argv[0] for argv, _, _ in TABLE if not argv[0].startswith("-")}
    assert len(TABLE) >= 60
    assert names - covered == set(), "tasks with no bad-input case"
    assert len({_key(a, e) for a, _, e in TABLE}) == len(TABLE), "duplicate cases"


@pytest.mark.parametrize("argv,fragment,env", TABLE, ids=[" ".join(a)[:60] + (" " + ",".join(e) if e else "")
                                                          for a, _, e in TABLE])
def test_bad_input_exits_2_with_one_line(outcomes, argv, fragment, env):
    proc = outcomes[_key(argv, env)]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert lines, "no error line"
    last = lines[-1]
    assert last.startswith("zmqlab: error: ") and fragment in last, last
    # One line; the only exception: progress said before the failure (e.g. "Backend: ...").
    assert len(lines) == 1 or all(not ln.startswith("zmqlab: error") for ln in lines[:-1]), lines


@pytest.mark.parametrize("argv", FINE, ids=[" ".join(a) for a in FINE])
def test_help_list_and_version_still_exit_0(outcomes, argv):
    proc = outcomes[_key(argv, {})]
    assert proc.returncode == 0 and proc.stdout.strip() and not proc.stderr.strip(), proc.stderr


def test_no_case_got_as_far_as_running_anything(outcomes, place):
    """A case that reached a backend would have made a venv in the (empty) cache, a run
    directory under TMPDIR, or a results directory: none may exist."""
    assert len(outcomes) == len(TABLE) + len(FINE)
    assert list(place["cache"].iterdir()) == []
    assert list(place["tmp"].iterdir()) == []
    assert list(place["out"].iterdir()) == [] and list(place["dir"].iterdir()) == []
    assert sorted(p.name for p in place["corrupt"].rglob("*")) == ["20260101-000000-abcd", "matrix.json"]
