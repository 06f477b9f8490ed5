"""lab.requests: the topology axis and the pair flags, validated once (no backend, no Docker)."""
import pytest

from lab.cells import Cell
from lab.errors import LabError
from lab.requests import (INTEROP_DEFAULTS, MATRIX_DEFAULTS, Axes, InteropRequest, PairRequest, RunSettings,
                          ScenarioRequest, SweepRequest)
from lab.targets import load_targets

A, B, C = "pyzmq-25.1.2", "pyzmq-26.4.0", "pyzmq-27.3.0"


def sweep(tmp_path, **kw):
    d = dict(MATRIX_DEFAULTS, targets=A, patterns="pushpull", transports="all", poll="off", sync="none")
    d.update(kw)
    return SweepRequest.from_cli(d["targets"], d["patterns"], d["transports"], d["variants"], d["poll"], d["sync"],
                                 2, 5, 1, 2.0, 0.0, "local", str(tmp_path), None, d["topology"],
                                 d.get("sender_target"), d.get("receiver_target"))


def scenario(transport="tcp", topology="threads", sender=None, receiver=None, json=None, target=A):
    return ScenarioRequest.from_cli(target, "pushpull", transport, "", 2, 5, False, "none", 0.0, 2.0, 1, "local",
                                    json, 0.0, None, topology, sender, receiver)


def test_axes_topologies():
    assert Axes.from_cli().topologies == ("threads",)
    assert Axes.from_cli(topology="all").topologies == ("threads", "processes", "containers")
    assert Axes.from_cli(topology="containers,threads").topologies == ("containers", "threads")
    with pytest.raises(LabError, match="unknown topology 'bogus'"):
        Axes.from_cli(topology="bogus")


def test_matrix_topologies_expand_and_are_recorded(tmp_path):
    request = sweep(tmp_path, topology="all")
    assert [c.key for c in request.cells] == [
        f"{A}/pushpull/inproc/default", f"{A}/pushpull/ipc/default", f"{A}/pushpull/ipc/default@processes",
        f"{A}/pushpull/tcp/default", f"{A}/pushpull/tcp/default@processes", f"{A}/pushpull/tcp/default@containers"]
    assert request.params["topology"] == ["threads", "processes", "containers"]
    assert "senders" not in request.params
    assert sweep(tmp_path).params["topology"] == ["threads"]
    with pytest.raises(LabError, match="topology processes needs ipc or tcp, which is not among the transports"):
        sweep(tmp_path, topology="processes", transports="inproc")


def test_matrix_pair_flags_imply_containers_over_tcp(tmp_path):
    one = sweep(tmp_path, sender_target="libzmq-4.1.6", receiver_target=B)
    assert [c.key for c in one.cells] == [f"libzmq-4.1.6>{B}/pushpull/tcp/default@containers"]
    assert [t.name for t in one.targets] == [B, "libzmq-4.1.6"]          # every pin the cells need
    assert one.params["senders"] == ["libzmq-4.1.6"] and one.params["receivers"] == [B]
    assert one.params["topology"] == ["containers"]
    fan = sweep(tmp_path, targets=f"{A},{C}", sender_target=B)            # B sends to every target
    assert [c.row for c in fan.cells] == [f"{B}>{A}", f"{B}>{C}"]
    into = sweep(tmp_path, targets=f"{A},{B}", receiver_target=B)         # every target sends to B
    assert [c.row for c in into.cells] == [f"{A}>{B}", B]
    with pytest.raises(LabError, match="run the pair in two containers, not --topology processes"):
        sweep(tmp_path, sender_target=B, topology="processes")
    with pytest.raises(LabError, match="topology containers needs tcp, which is not among the transports"):
        sweep(tmp_path, sender_target=B, transports="ipc")
    with pytest.raises(LabError, match="unknown target 'nosuch'"):
        sweep(tmp_path, receiver_target="nosuch")


def test_scenario_topologies_and_pairs(tmp_path):
    assert scenario().cells == (Cell(A, "pushpull", "tcp", threads=2, msgs=5),)
    assert [c.topology for c in scenario(topology="all").cells] == ["threads", "processes", "containers"]
    # several topologies collapse to those that carry the transport; one alone must carry it
    assert [c.topology for c in scenario("inproc", "all").cells] == ["threads"]
    with pytest.raises(LabError, match=r"topology processes needs ipc or tcp, not inproc \(inproc cannot cross"):
        scenario("inproc", "processes")
    pair = scenario(sender="libzmq-4.1.6", receiver=B)
    assert pair.cell.key == f"libzmq-4.1.6>{B}/pushpull/tcp/default@containers"
    assert pair.target.name == B and pair.sender.name == "libzmq-4.1.6"
    own = scenario(sender=A)                          # the same pin: the diagonal, no second target
    assert own.cell.key == f"{A}/pushpull/tcp/default@containers" and own.sender is None
    assert scenario(receiver=C, target=A).sender.name == A       # --target is the other side's default
    with pytest.raises(LabError, match="over tcp, not ipc"):
        scenario("ipc", sender=B)
    with pytest.raises(LabError, match="--json holds one verdict"):
        scenario(topology="threads,containers", json=str(tmp_path / "v.json"))


def test_containers_runs_get_five_more_seconds_and_parse_as_the_receiver():
    settings = RunSettings(repeat=1, stall=2.0)
    threads = Cell(A, "pushpull", "tcp", threads=2, msgs=5)
    containers = Cell(A, "pushpull", "tcp", threads=2, msgs=5, topology="containers")
    assert settings.hard_timeout(containers) == settings.hard_timeout(threads) + 5.0
    assert RunSettings(repeat=1, timeout=10.0).hard_timeout(containers) == 15.0
    args = settings.check(containers)              # the backend adds --role and the addresses
    assert args.topology == "containers" and args.role == "receiver"
    assert "--role" not in settings.argv(containers)
    assert settings.check(Cell(A, "pushpull", "ipc", topology="processes")).topology == "processes"


def interop(tmp_path, **kw):
    d = dict(INTEROP_DEFAULTS, backend="docker")
    d.update(kw)
    return InteropRequest.from_cli(d["targets"], d["patterns"], d["sync"], d["poll"], d["threads"], d["msgs"],
                                   d["repeat"], d["stall"], d["sleep"], d["backend"], str(tmp_path), d["jobs"])


def test_interop_is_every_ordered_pair_of_the_buildable_pins(tmp_path):
    request = interop(tmp_path)
    buildable = [t.name for t in load_targets() if not t.broken]
    assert [t.name for t in request.targets] == buildable
    n = len(buildable)
    assert len(request.cells) == n * n * 5        # pubsub, pubsub+xpub, pushpull, routerdealer, pair
    assert {c.topology for c in request.cells} == {"containers"} and {c.transport for c in request.cells} == {"tcp"}
    assert {(c.sender_target, c.target) for c in request.cells} == {(s, r) for s in buildable for r in buildable}
    assert len({c.key for c in request.cells}) == len(request.cells)
    assert request.params["interop"] == buildable and request.params["jobs"] == 2
    assert request.settings.repeat == 3 and request.threads == 10 and request.msgs == 100
    two = interop(tmp_path, targets=f"{A},{B}", patterns="pushpull", sync="none", jobs=1)
    assert [c.key for c in two.cells] == [f"{A}/pushpull/tcp/default@containers",
                                          f"{B}>{A}/pushpull/tcp/default@containers",
                                          f"{A}>{B}/pushpull/tcp/default@containers",
                                          f"{B}/pushpull/tcp/default@containers"]
    assert len(interop(tmp_path, patterns="pair", sync="none", targets=A).cells) == 1    # xpub only for pubsub
    with pytest.raises(LabError, match="needs the docker backend, not local"):
        interop(tmp_path, backend="local")
    with pytest.raises(LabError, match="--jobs must be at most 64"):
        interop(tmp_path, jobs=65)


def test_upgrade_checks_rolling_cells():
    request = PairRequest.from_cli(A, B, 2, 5, 5, 2.0, "local", "results", None, rolling=True, run=False)
    base, new = request.rolling_cells()
    assert [c.key for c in base] == [f"{A}/{p}/tcp/default@containers" for p in ("pubsub", "pushpull", "routerdealer")]
    assert [c.row for c in new] == [B] * 3 + [f"{A}>{B}"] * 3 + [f"{B}>{A}"] * 3
    assert PairRequest.from_cli(A, B, 2, 5, 5, 2.0, "local", "results", None, run=False).rolling_cells() == ((), ())
    only = PairRequest.from_cli(A, B, 2, 5, 5, 2.0, "local", "results", None, patterns="pair,pushpull",
                                rolling=True, run=False)
    assert [c.pattern for c in only.rolling_cells()[0]] == ["pushpull"]


def test_a_matrix_request_carries_its_jobs_and_records_them():
    from lab.requests import SweepRequest
    one = SweepRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "primary", "off", "none", 2, 5, 1, 2.0, 0.0,
                                "local", "results")
    two = SweepRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "primary", "off", "none", 2, 5, 1, 2.0, 0.0,
                                "local", "results", jobs=2)
    assert one.jobs == 1 and "jobs" not in one.params
    assert two.jobs == 2 and two.params["jobs"] == 2
    with pytest.raises(LabError, match="--jobs must be at least 1"):
        SweepRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "primary", "off", "none", 2, 5, 1, 2.0, 0.0,
                              "local", "results", jobs=0)


def test_reproduce_runs_the_seeds_programs_without_socket_monitors():
    from lab.requests import ReproduceRequest
    request = ReproduceRequest.from_cli("pyzmq-25.1.2", 2, 2.0, "local", "results", None, None, 1.0)
    cell = request.claims[0].cell("pyzmq-25.1.2")
    assert "--no-monitor" in request.settings.argv(cell)


# ---- socket options: an axis of `matrix`, one set for `scenario` -----------------------------------

def test_matrix_socket_option_sets_expand_and_are_recorded(tmp_path):
    def with_sockopts(sockopts, **kw):
        d = dict(MATRIX_DEFAULTS, targets=A, patterns="pushpull", transports="inproc,tcp", poll="off", sync="none")
        d.update(kw)
        return SweepRequest.from_cli(d["targets"], d["patterns"], d["transports"], d["variants"], d["poll"],
                                     d["sync"], 2, 5, 1, 2.0, 0.0, "local", str(tmp_path), sockopts=sockopts)
    request = with_sockopts("none,hb100-300+immediate,hwm10")
    assert [c.key for c in request.cells] == [
        f"{A}/pushpull/inproc/default", f"{A}/pushpull/inproc/default+hwm10",
        f"{A}/pushpull/tcp/default", f"{A}/pushpull/tcp/default+hb100-300+immediate", f"{A}/pushpull/tcp/default+hwm10"]
    assert request.params["sockopts"] == ["none", "hb100-300+immediate", "hwm10"]
    assert "sockopts" not in with_sockopts("none").params and "sockopts" not in sweep(tmp_path).params
    # each cell parses as the harness will parse it, and the report states the options
    from scenarios import flags
    args = request.settings.check(request.cells[3])
    assert flags.params(args)["sockopts"] == {"heartbeat": [100, 300], "immediate": True}
    assert "sockopts" not in flags.params(request.settings.check(request.cells[0]))
    with pytest.raises(LabError, match="apply to none of the chosen cells"):
        with_sockopts("hb100", transports="inproc")


def test_scenario_takes_one_set_of_socket_options():
    def one(sockopts, pattern="reqrep", transport="tcp"):
        return ScenarioRequest.from_cli(A, pattern, transport, "", 2, 5, False, "none", 0.0, 2.0, 1, "local",
                                        None, 0.0, None, "threads", None, None, sockopts)
    assert one("hb100-300-1000+rivl50").cell.key == f"{A}/reqrep/tcp/default+hb100-300-1000+rivl50"
    assert one("none").cell == Cell(A, "reqrep", "tcp", threads=2, msgs=5)
    assert scenario().cell.sockopts == one("none").cell.sockopts
    with pytest.raises(LabError, match="one set of options"):
        one("hwm1,hwm2")
    with pytest.raises(LabError, match="--immediate: for connection-oriented transports only"):
        one("immediate", transport="inproc")


# ---- faults ---------------------------------------------------------------------------------

def test_a_fault_needs_a_stall_window_longer_than_its_silence():
    from lab.requests import ScenarioRequest
    with pytest.raises(LabError, match=r"--stall 2 is too short for a 2 s fault: give at least 5"):
        ScenarioRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "", 5, 100, False, "none", 0.0, 2.0, 1,
                                 "docker", None, 0.0, None, fault="partition:receiver@1+2")
    req = ScenarioRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "", 5, 100, False, "none", 0.0, 5.0, 1,
                                   "docker", None, 0.0, None, fault="partition:receiver@1+2")
    assert req.cell.topology == "containers" and req.cell.fault.kind == "partition"


def test_faults_parse_as_a_list_with_none_and_bad_ones_are_one_line():
    from lab.requests import parse_faults
    none, pause = parse_faults("none,pause:rx@1+2")
    assert none is None and pause.label == "pause:rx@1+2"
    with pytest.raises(LabError, match="kind 'nap' is unknown"):
        parse_faults("nap:rx@1+2")


def test_nowait_reaches_every_cell_and_the_runs_parameters():
    from lab.requests import ScenarioRequest, SweepRequest
    one = ScenarioRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "", 5, 100, False, "none", 0.0, 2.0, 1,
                                   "local", None, 0.0, None, nowait=True)
    assert one.cell.nowait and one.settings.check(one.cell).nowait       # the harness parses --nowait
    sweep = SweepRequest.from_cli("pyzmq-25.1.2", "pushpull,pair", "tcp", "primary", "off", "none", 2, 5, 1, 2.0,
                                  0.0, "local", "results", nowait=True)
    assert all(c.nowait for c in sweep.cells) and sweep.params["nowait"] is True
    plain = SweepRequest.from_cli("pyzmq-25.1.2", "pushpull", "tcp", "primary", "off", "none", 2, 5, 1, 2.0,
                                  0.0, "local", "results")
    assert "nowait" not in plain.params and not any(c.nowait for c in plain.cells)
