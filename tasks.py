"""zmqlab's Invoke tasks: a thin layer over lab/. `./zmqlab --list` shows them; `./zmqlab --help
TASK` explains each flag.

Exit codes, the same for every task (lab/cli.py maps Invoke's own parse errors onto them):
  0    fine
  1    the thing checked failed or got worse (a scenario's verdict failed; compare,
       upgrade-check, sweep-gate: a cell got worse; reproduce: a disagreement; images: a build)
  2    usage or input error: one line on stderr, no traceback; every output path (--json,
       --markdown, --out, --path) is checked before anything runs
  3    an internal error (a bug): its traceback, then one line
  130  interrupted (SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP): the backend has
       cleaned up and what finished is kept
"""
from __future__ import annotations

import functools
import signal
import sys
import traceback

from invoke import task

from lab import app

D = app.MATRIX_DEFAULTS
S = app.SWEEP_DEFAULTS
I = app.INTEROP_DEFAULTS  # noqa: E741

USAGE, INTERNAL = 2, 3
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_signals_seen: list[int] = []


def _interrupt(signum, frame):
    """First signal: unwind (backends clean up in their finally blocks). A second one while
    that runs is noted, not obeyed, so it cannot cut the cleanup short; a third forces."""
    _signals_seen.append(signum)
    if len(_signals_seen) == 2:
        sys.stderr.write("\nzmqlab: still cleaning up (signal once more to abandon the cleanup)\n")
        return
    raise app.Interrupted(_signals_seen[0])


def lab_task(fn):
    """The exit-code contract above. The task returns the app's Outcome: its text goes to
    stdout and its code is the exit status. Errors are one line, and a signal ends with
    128 + its number after the backend cleaned up (SIGTERM/SIGHUP -- a closed terminal, a CI
    timeout -- clean up exactly like Ctrl-C)."""
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        for sig in HANDLED:
            signal.signal(sig, _interrupt)
        try:
            # --engine (on every task that talks to an engine) is process-wide, like
            # DOCKER_HOST: applied here, once, so each task body stays one lab.app call.
            app.use_engine(kwargs.get("engine"))
            outcome = fn(c, *args, **kwargs)
        except app.LabError as exc:
            sys.stderr.write("zmqlab: error: %s\n" % " ".join(str(exc).split()))
            sys.exit(USAGE)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            sys.stderr.write("\nzmqlab: %s; what finished is kept\n" % (
                "interrupted" if signum == signal.SIGINT else "stopped by %s" % signal.Signals(signum).name))
            sys.exit(128 + signum)
        except (SystemExit, GeneratorExit):
            raise
        except Exception as exc:           # a bug: its traceback for the report, then one line
            traceback.print_exc()
            sys.stderr.write("zmqlab: internal error (please report it): %s: %s\n" % (
                type(exc).__name__, " ".join(str(exc).split())))
            sys.exit(INTERNAL)
        if outcome.text:
            print(outcome.text)
        sys.exit(outcome.code)
    return wrapper


COMMON = {
    "threads": "control threads per run (sender sockets)",
    "msgs": "pings each control thread sends",
    "repeat": "runs per cell; verdicts report the failure rate over them with a 95% interval",
    "stall": "seconds without progress before a run is classified (watchdog)",
    "sleep": "seconds between the senders finishing and the shutdown message (originals: 1; matrix default 0, see docs/fidelity.md)",
    "backend": "auto (Docker if an engine answers, else local processes), docker or local",
}
ENGINE = {"engine": "the Docker engine: unix:///path, tcp://host:port or ssh://user@host[:port] "
                     "(default: $DOCKER_HOST, else the local socket)"}
TOPOLOGY = {
    "topology": "where the two sides run: threads (one process, default), processes (two; ipc or tcp), "
                "containers (two, Docker only; tcp); a comma list or 'all' (each where its transport allows)",
    "sender-target": "the senders' pin, in its own container (implies --topology containers over tcp)",
    "receiver-target": "the receiver's pin, in its own container (implies --topology containers over tcp)",
}
FAULT = "a fault applied to one peer mid-run (containers; docs/faults.md): KIND:TARGET@WHEN+DURATION[=RATE], " \
        "KIND pause, kill (kill -9, then started again), partition, reset, bandwidth (delay, loss need " \
        "netem), TARGET receiver|sender, WHEN seconds after the receiver bound or afterK pings, e.g. " \
        "partition:receiver@1.5+2, kill:rx@after300+1; needs --stall >= duration + 3"
SOCKOPTS = "socket options as a label names them, '+'-joined: hbIVL[-TIMEOUT[-TTL]] (ms), immediate, rivlMS, " \
           "hwmN, bufN[k] (ZMQ_SNDBUF and RCVBUF; sndbufN[k], rcvbufN[k] one), nodrop (pubsub --sync xpub); " \
           "'none' (default)"

NOWAIT = "send the pings with ZMQ_DONTWAIT (the originals' default is blocking): a full queue refuses " \
         "with EAGAIN, counted apart from loss (e.g. XPUB_NODROP under a paused subscriber)"


@task(help=dict(COMMON, **ENGINE, **TOPOLOGY, target="target name from pins.toml (see `invoke targets`)",
                pattern="pair, pubsub, pushpull, clientserver, routerdealer, scattergather, radiodish, peer or channel",
                transport="inproc, ipc or tcp",
                variant="pattern variant (thread-safe patterns: shared, per-thread)",
                poll="the originals' -poll: 1 ms zmq_poll(POLLIN) on the sending socket after connect "
                     "(and after every send for pubsub, pushpull, routerdealer)",
                sync="pubsub only: 'xpub' makes senders wait for the subscription",
                json="also write the verdict JSON to this path",
                timeout="hard per-run bound in seconds (default: derived from the cell)",
                inject="TEST ONLY fault: drop:[T:]K, dup:K, swap:K, block-sender, raise", sockopts=SOCKOPTS,
                fault=FAULT + " ('none' default)", nowait=NOWAIT))
@lab_task
def scenario(c, target="pyzmq-25.1.2", pattern="pubsub", transport="tcp", variant="", threads=10, msgs=1000,
             poll=False, sync="none", sleep=1.0, stall=2.0, repeat=5, backend="auto", json=None,
             timeout=0.0, inject=None, topology="threads", sender_target=None, receiver_target=None, engine="",
             sockopts="none", fault="none", nowait=False):
    """Run one cell (target x pattern x transport x options) --repeat times; print its verdict."""
    return app.scenario(app.ScenarioRequest.from_cli(target, pattern, transport, variant, threads, msgs, poll,
                                                     sync, sleep, stall, repeat, backend, json, timeout, inject,
                                                     topology, sender_target, receiver_target, sockopts, fault,
                                                     nowait))


@task(help=dict(COMMON, **ENGINE, **TOPOLOGY, targets="comma list of targets, or 'all' (default: a quick, useful set)",
                patterns="comma list or 'all'", transports="comma list or 'all'",
                variants="'primary' (each pattern's first variant), 'all', or a comma list",
                poll="'both', 'on' or 'off'", sync="comma list of none,xpub (xpub applies to pubsub)",
                resume="RUN_DIR of an interrupted matrix: run only its missing cells, with its own "
                       "parameters (every other flag but --backend is ignored)",
                out="results root; each run writes OUT/<run-id>/",
                jobs="runs busy at once (default 1; more than the cores changes what a race does); a run "
                     "waiting out its stall window frees its slot (lab/slots.py)",
                sockopts="comma list of socket-option sets, each " + SOCKOPTS,
                faults="comma list of faults ('none': the cell without one), each " + FAULT,
                nowait=NOWAIT + "; every cell of the sweep"))
@lab_task
def matrix(c, targets=D["targets"], patterns=D["patterns"], transports=D["transports"],
           variants=D["variants"], poll=D["poll"], sync=D["sync"], threads=D["threads"], msgs=D["msgs"],
           repeat=D["repeat"], stall=D["stall"], sleep=D["sleep"], backend="auto", out="results", resume=None,
           topology=D["topology"], sender_target=None, receiver_target=None, engine="", jobs=1, sockopts="none",
           faults="none", nowait=False):
    """Run every cell of targets x patterns x transports x options; print the matrix, write matrix.json/.md."""
    if resume is not None:
        return app.resume(resume, backend)
    return app.matrix(app.SweepRequest.from_cli(targets, patterns, transports, variants, poll, sync, threads,
                                                msgs, repeat, stall, sleep, backend, out, None, topology,
                                                sender_target, receiver_target, jobs, sockopts, faults, nowait))


@task(help=dict(COMMON, **ENGINE, targets="comma list of targets, or 'all' (default: every pin that can be built here)",
                patterns="comma list or 'all' (default: pubsub, pushpull, routerdealer, pair)",
                sync="comma list of none,xpub (xpub applies to pubsub)", poll="'off' (default), 'on' or 'both'",
                jobs="cells run at once (each is a receiver and a sender container)",
                backend="auto or docker: every pair runs in two containers",
                out="results root; the run writes OUT/<run-id>/ with interop.md, .json, .html"))
@lab_task
def interop(c, targets=I["targets"], patterns=I["patterns"], sync=I["sync"], poll=I["poll"], threads=I["threads"],
            msgs=I["msgs"], repeat=I["repeat"], stall=I["stall"], sleep=I["sleep"], jobs=I["jobs"], backend="auto",
            out="results", engine=""):
    """Every ordered pair of pins (sender x receiver, each in its own container over tcp): one heatmap per pattern."""
    return app.interop_grid(app.InteropRequest.from_cli(targets, patterns, sync, poll, threads, msgs, repeat, stall,
                                                        sleep, backend, out, jobs))


@task(help={"targets": "comma list of targets, or 'all' (default)",
            "repeat": "runs per configuration and target (the verdict's interval narrows with more)",
            "stall": COMMON["stall"], "backend": COMMON["backend"],
            "sleep": "seconds before the shutdown message (default 1, the originals' -sleep)",
            "out": "results root; the run writes OUT/<run-id>/ with every verdict and reproduce.md",
            "markdown": "also write the report here (e.g. docs/results/DATE-reproduce.md)",
            "judged": "run nothing: judge the verdicts of this earlier reproduce run directory again",
            "configs": "'all' or a comma list of configurations: pubsub-10x1000, pubsub-10x1000-poll, "
                       "pubsub-100x1000-poll, pair-1x1000, pair-1x1000-poll, pushpull-100x1000, "
                       "pushpull-100x1000-poll, clientserver-100x1000, clientserver-100x1000-poll"})
@lab_task
def reproduce(c, targets="all", repeat=10, stall=2.0, sleep=1.0, backend="auto", out="results", markdown=None,
              judged=None, configs="all"):
    """Re-run every configuration the write-up publishes (PUB/SUB, PAIRs, PUSH/PULL, CLIENT/SERVER,
    as the original programs run them) on each target; print the write-up's claim, the lab's
    verdict and whether they agree. Exit 1 when any disagree."""
    return app.reproduce(app.ReproduceRequest.from_cli(targets, repeat, stall, backend, out, markdown, judged,
                                                       sleep, configs))


@task(help={**ENGINE, "targets": "comma list of targets, or 'all' (default)",
            "base": "re-make (bootstrap or pull again) the base images and rebuild on them",
            "base-source": "where bases come from: auto (default: a base already there, else a registry "
                           "image the engine can pull, else bootstrap as root, else without root), "
                           "registry, or bootstrap; also $ZMQLAB_BASE_SOURCE"})
@lab_task
def images(c, targets="all", base=False, base_source="", engine=""):
    """Build the pinned Docker images offline (skips those already up to date)."""
    return app.images(targets, base, base_source)


@task
@lab_task
def targets(c):
    """List the pinned targets: pyzmq, libzmq, draft API, how each is built."""
    return app.targets()


@task(help={"docker": "include the Docker-backed tests (they skip when no engine answers, "
                      "unless ZMQLAB_REQUIRE_DOCKER=1, as in CI)",
            "slow": "include slow tests (real races, image builds, Chromium)", "k": "pytest -k expression"})
@lab_task
def test(c, docker=True, slow=True, k=""):
    """Set up what the tests need (host packages as root), then run the whole test suite."""
    return app.test(docker, slow, k)


@task(help={"backend": "backend for the container-overhead figures (auto/docker/local)",
            "matrix": "also time a bare `invoke matrix` (the default sweep) end to end, warm",
            "cold": "with --matrix: first REMOVE the lab's images and cached base tarballs, so the "
                    "timing includes debootstrap and every image build",
            "grid": "also time the interop grid (every ordered pair of the pins, 4 pattern labels, 3 runs)",
            "full_matrix": "also time the full single-version matrix (all pins and variants, 5 runs, 20x200)"})
@lab_task
def bench(c, backend="auto", matrix=False, cold=False, grid=False, full_matrix=False):
    """Print benchmark figures: harness vs bare pyzmq, hang-to-verdict delay, container and topology
    overhead, drain-window verdicts, a remote engine; optionally whole sweeps' wall times."""
    return app.bench(backend, matrix, cold, grid, full_matrix)


# --- regression, reports and sweeps ---
# Exit codes: 0 nothing got worse, 1 something got worse, 2 bad input (one-line error).

SIZES = {"threads": "control threads per run (sender sockets)", "msgs": "pings each control thread sends",
         "repeat": "runs per cell to start with", "stall": COMMON["stall"], "backend": COMMON["backend"],
         "out": "results root for the runs it makes"}
MARKDOWN = {"markdown": "also write the comparison as Markdown to this file"}


@task(help=dict(SIZES, **ENGINE, **MARKDOWN, base="BASE: a results directory, or a pinned target to run first",
                new="NEW: a results directory, or a pinned target to run first"))
@lab_task
def compare(c, base, new, threads=10, msgs=100, repeat=5, stall=2.0, backend="auto", out="results",
            markdown=None, engine=""):
    """Cell by cell: got worse / got better / unchanged (95% Wilson intervals must separate)."""
    return app.compare(app.PairRequest.for_compare(base, new, threads, msgs, repeat, stall, backend, out, markdown))


@task(name="upgrade-check",
      help=dict(SIZES, **ENGINE, **MARKDOWN, from_="the target you run now", to="the target you consider moving to",
                max_repeat="most runs a cell gets while its intervals overlap but its rates differ",
                patterns="comma list or 'all'", transports="comma list or 'all'", poll="'both', 'on' or 'off'",
                rolling="with a Docker engine, also the mixed pairs FROM -> TO and TO -> FROM in containers "
                        "(pubsub, pushpull, routerdealer over tcp), judged against FROM -> FROM "
                        "(--no-rolling skips them)"))
@lab_task
def upgrade_check(c, from_, to, threads=10, msgs=100, repeat=5, max_repeat=app.MAX_REPEAT, stall=2.0,
                  backend="auto", out="results", patterns="all", transports="all", poll="both", markdown=None,
                  rolling=True, engine=""):
    """Run two targets on the same cells (adding runs where the noise decides), then compare."""
    return app.upgrade_check(app.PairRequest.from_cli(from_, to, threads, msgs, repeat, stall, backend, out,
                                                      markdown, patterns, transports, poll, max_repeat,
                                                      rolling=rolling))


@task(help={"results": "a results run directory", "path": "the baseline file to refresh",
            "allow_partial": "accept an interrupted (partial) run"})
@lab_task
def baseline(c, results, path="baseline/expected.json", allow_partial=False):
    """Refresh the expected-verdicts baseline from a results directory."""
    return app.baseline(results, path, allow_partial)


@task(help={"results": "a results run directory", "html": "write report.html", "junit": "write junit.xml",
            "markdown": "print the Markdown matrix (e.g. >> $GITHUB_STEP_SUMMARY)",
            "out": "folder for report files (default: the results directory)"})
@lab_task
def report(c, results, html=False, junit=False, markdown=False, out=None):
    """Reports from a results directory: HTML heatmap, JUnit XML, Markdown (all three if none chosen)."""
    return app.report(results, html, junit, markdown, out)


@task(name="sweep-plan", help={"targets": "comma list of targets, or 'all'"})
@lab_task
def sweep_plan(c, targets="all"):
    """Print the sweep's job matrix as JSON (for GitHub's fromJSON)."""
    return app.sweep_plan(targets)


@task(name="sweep-run", help=dict(SIZES, **ENGINE, target="one pinned target", out="results root (gets OUT/<run-id>/)",
                                  inject="TEST ONLY fault, as for `scenario`",
                                  patterns="comma list or 'all' (CI: all)", transports="comma list or 'all' (CI: all)"))
@lab_task
def sweep_run(c, target, out, threads=S["threads"], msgs=S["msgs"], repeat=S["repeat"], stall=S["stall"],
              backend="auto", inject=None, patterns=S["patterns"], transports=S["transports"], engine=""):
    """Run one target's share of the sweep (every pattern x transport, poll off and on)."""
    return app.sweep_run(app.SweepRequest.one_target(target, out, threads, msgs, repeat, stall, backend, inject,
                                                     patterns, transports))


@task(name="sweep-merge",
      help={"dirs": "comma list of results directories (run dirs, or folders holding them)",
            "out": "results root for the merged run"})
@lab_task
def sweep_merge(c, dirs, out):
    """Merge per-target sweep results into one matrix (conflicts are errors)."""
    return app.sweep_merge(dirs, out)


@task(name="sweep-gate", help={"results": "the merged results directory", "baseline": "expected verdicts",
                               "markdown": "also write the comparison as Markdown here",
                               "allow_partial": "gate on an interrupted (partial) run anyway"})
@lab_task
def sweep_gate(c, results, baseline="baseline/expected.json", markdown=None, allow_partial=False):
    """Compare a sweep against the baseline; exit 1 when a cell got worse than expected."""
    return app.sweep_gate(results, baseline, markdown, allow_partial)
