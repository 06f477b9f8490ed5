"""zmqlab's Invoke tasks: a thin layer over lab/. `invoke --list` shows them; `invoke --help TASK`
explains each flag. Errors the user can fix are one line on stderr and exit status 2."""
from __future__ import annotations

import functools
import os
import subprocess
import sys

from invoke import task

from lab.errors import LabError
from lab.runner import RunSettings


def lab_task(fn):
    """One-line errors instead of tracebacks; Ctrl-C ends with 130 after the backend cleaned up."""
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        try:
            return fn(c, *args, **kwargs)
        except LabError as exc:
            sys.stderr.write("zmqlab: error: %s\n" % exc)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.stderr.write("\nzmqlab: interrupted; what finished is kept\n")
            sys.exit(130)
    return wrapper


def _settings(repeat, stall, sleep, timeout=0.0, inject=None):
    return RunSettings(repeat=repeat, stall=stall, sleep=sleep, timeout=timeout or None,
                       extra=("--inject", inject) if inject else ())


COMMON = {
    "threads": "control threads per run (sender sockets)",
    "msgs": "pings each control thread sends",
    "repeat": "runs per cell; verdicts report the failure rate over them with a 95% interval",
    "stall": "seconds without progress before a run is classified (watchdog)",
    "sleep": "seconds to wait after the senders finish (the reference used 1; not needed)",
    "backend": "auto (Docker if an engine answers, else local processes), docker or local",
}


@task(help=dict(COMMON, target="target name from pins.toml (see `invoke targets`)",
                pattern="pair, pubsub, pushpull, clientserver or routerdealer",
                transport="inproc, ipc or tcp", variant="pattern variant (clientserver: shared, per-thread)",
                poll="1 ms zmq_poll after connect and after every send",
                sync="pubsub only: 'xpub' makes senders wait for the subscription",
                json="also write the verdict JSON to this path",
                timeout="hard per-run bound in seconds (default: derived from the cell)",
                inject="TEST ONLY fault: drop:[T:]K, dup:K, swap:K, block-sender, raise"))
@lab_task
def scenario(c, target="pyzmq-25.1.2", pattern="pubsub", transport="tcp", variant="", threads=10, msgs=1000,
             poll=False, sync="none", sleep=0.0, stall=2.0, repeat=5, backend="auto", json=None,
             timeout=0.0, inject=None):
    """Run one cell (target x pattern x transport x options) --repeat times; print its verdict."""
    from lab import app
    code = app.scenario(target, pattern, transport, variant, threads, msgs, poll, sync,
                        _settings(repeat, stall, sleep, timeout, inject), backend, json)
    sys.exit(code)


@task(help=dict(COMMON, targets="comma list of targets, or 'all' (default: a quick, useful set)",
                patterns="comma list or 'all'", transports="comma list or 'all'",
                variants="'primary' (each pattern's first variant), 'all', or a comma list",
                poll="'both', 'on' or 'off'", sync="comma list of none,xpub (xpub applies to pubsub)",
                out="results root; each run writes OUT/<run-id>/"))
@lab_task
def matrix(c, targets="pyzmq-25.1.2,pyzmq-27.3.0,pyzmq-25.1.2-draft", patterns="all", transports="all",
           variants="primary", poll="both", sync="none,xpub", threads=20, msgs=200, repeat=3, stall=2.0,
           sleep=0.0, backend="auto", out="results"):
    """Run every cell of targets x patterns x transports x options; print the matrix, write matrix.json/.md."""
    from lab import app
    app.matrix(targets, patterns, transports, variants, poll, sync, threads, msgs,
               _settings(repeat, stall, sleep), backend, out)


@task(help={"targets": "comma list of targets, or 'all' (default)",
            "base": "re-make the debootstrapped base images and rebuild on them"})
@lab_task
def images(c, targets="all", base=False):
    """Build the pinned Docker images offline (skips those already up to date)."""
    from lab import app, engine
    from lab.targets import load_targets, select
    chosen = select(load_targets(), targets)
    report = app.ensure_images(engine.connect(), chosen, rebuild_base=base)
    for r in report:
        print("%-24s %-8s %6.1fs  %s" % (r.target, r.status, r.seconds, r.detail))
    if any(r.status == "failed" for r in report):
        sys.exit(1)


@task
@lab_task
def targets(c):
    """List the pinned targets: pyzmq, libzmq, draft API, how each is built."""
    from lab.targets import load_targets
    for t in load_targets():
        print("%-24s pyzmq %-7s libzmq %-6s %-6s %-14s %s%s" % (
            t.name, t.pyzmq, t.libzmq, "draft" if t.draft else "", t.kind, t.suite,
            "  BROKEN: " + t.broken if t.broken else ""))


@task(help={"docker": "include the Docker-backed tests (they skip when no engine answers, "
                      "unless ZMQLAB_REQUIRE_DOCKER=1, as in CI)",
            "slow": "include slow tests (real races, image builds, Chromium)", "k": "pytest -k expression"})
@lab_task
def test(c, docker=True, slow=True, k=""):
    """Set up what the tests need (host packages as root), then run the whole test suite."""
    from lab import hostsetup
    if os.geteuid() == 0:
        hostsetup.apt_install(["debootstrap", "chromium"], progress=lambda s: print("zmqlab: " + s))
    args = [sys.executable, "-m", "pytest", "-ra"]
    marks = [m for m, on in (("docker", docker), ("slow", slow)) if not on]
    if marks:
        args += ["-m", " and ".join("not " + m for m in marks)]
    if k:
        args += ["-k", k]
    sys.exit(subprocess.call(args))


@task(help={"backend": "backend for the container-overhead figures (auto/docker/local)"})
@lab_task
def bench(c, backend="auto"):
    """Print benchmark figures: harness vs bare pyzmq, hang-to-verdict delay, container overhead."""
    from lab import bench as bench_mod
    bench_mod.main(backend)
