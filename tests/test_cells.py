import pytest

from lab.cells import (PATTERNS, RECEIVER_JOURNAL, TRANSPORTS, VARIANTS, Cell, expand, parse_list, parse_poll_modes,
                       parse_sockopts)
from lab.errors import LabError
from lab.targets import parse_pins


def test_key_and_label():
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", poll=True)
    assert cell.label == "default+poll"
    assert cell.key == "pyzmq-25.1.2/pubsub/tcp/default+poll"
    xpub = Cell("t", "pubsub", "ipc", poll=True, sync="xpub")
    assert xpub.key == "t/pubsub/ipc/default+poll+xpub"
    assert xpub.column == ("pubsub", "ipc", "default+poll+xpub")


def test_default_variant_maps_to_the_patterns_primary_one():
    cell = Cell("t", "clientserver", "inproc")
    assert cell.variant == "shared"
    assert cell == Cell("t", "clientserver", "inproc", "shared")
    assert Cell("t", "clientserver", "inproc", "per-thread").label == "per-thread"


@pytest.mark.parametrize("kwargs, message", [
    (dict(pattern="foo"), "unknown pattern 'foo' (known: pair, pubsub, pushpull, clientserver, routerdealer, scattergather"),
    (dict(transport="udp"), "unknown transport 'udp'"),
    (dict(pattern="pair", sync="xpub"), "sync 'xpub' only applies to pubsub"),
    (dict(variant="per-thread"), "unknown variant 'per-thread' for pubsub"),
    (dict(threads=0), "threads must be at least 1"),
    (dict(msgs=-3), "msgs must be at least 1"),
    (dict(threads=True), "threads must be a whole number"),
    (dict(sync="xsub"), "unknown sync mode"),
])
def test_invalid_cells_are_one_line_errors(kwargs, message):
    fields = dict(target="t", pattern="pubsub", transport="tcp") | kwargs
    with pytest.raises(LabError) as info:
        Cell(**fields)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_scenario_argv_full_and_minimal():
    cell = Cell("t", "clientserver", "ipc", "per-thread", poll=True, threads=100, msgs=5)
    assert cell.scenario_argv(stall=5, sleep=0.5, extra=("--linger", "0")) == [
        "--pattern", "clientserver", "--transport", "ipc", "--threads", "100", "--msgs", "5",
        "--poll", "--variant", "per-thread", "--stall", "5", "--sleep", "0.5", "--linger", "0"]
    assert Cell("t", "pubsub", "tcp", sync="xpub").scenario_argv(2.5, 1) == [
        "--pattern", "pubsub", "--transport", "tcp", "--threads", "10", "--msgs", "1000",
        "--sync", "xpub", "--stall", "2.5", "--sleep", "1"]


def test_cell_dict_round_trip():
    cell = Cell("t", "pubsub", "tcp", poll=True, sync="xpub", threads=3, msgs=7)
    assert Cell.from_dict(cell.to_dict()) == cell
    with pytest.raises(LabError, match="lacks 'msgs'"):
        Cell.from_dict({k: v for k, v in cell.to_dict().items() if k != "msgs"})


def test_parse_list():
    assert parse_list("pair, pubsub,pair", PATTERNS, "pattern") == ("pair", "pubsub")
    assert parse_list("all", TRANSPORTS, "transport") == TRANSPORTS
    assert parse_list(["tcp"], TRANSPORTS, "transport") == ("tcp",)
    with pytest.raises(LabError, match=r"unknown pattern 'foo' \(known: pair, "):
        parse_list("pair,foo", PATTERNS, "pattern")
    with pytest.raises(LabError, match="no transport given"):
        parse_list(" , ", TRANSPORTS, "transport")
    with pytest.raises(LabError, match="'all' cannot be combined"):
        parse_list("all,tcp", TRANSPORTS, "transport")


def test_parse_poll_modes():
    assert parse_poll_modes("both") == (False, True)
    assert parse_poll_modes("on") == (True,)
    assert parse_poll_modes("off,on") == (False, True)
    assert parse_poll_modes([True]) == (True,)
    with pytest.raises(LabError):
        parse_poll_modes("maybe")


def test_expand_default_sweep_counts_and_order():
    cells = expand(["b-target", "a-target"], threads=2, msgs=3)
    # 10 patterns x 3 transports x 2 poll modes, one variant each, per target
    assert len(cells) == 2 * 10 * 3 * 2
    assert [c.target for c in cells[:60]] == ["b-target"] * 60      # targets keep pin order
    assert cells[0] == Cell("b-target", "pair", "inproc", poll=False, threads=2, msgs=3)
    assert cells[1] == Cell("b-target", "pair", "inproc", poll=True, threads=2, msgs=3)
    assert [c.order for c in cells[:30]] == sorted(c.order for c in cells[:30])
    assert len({c.key for c in cells}) == len(cells)


def test_expand_is_independent_of_the_order_names_were_given_in():
    a = expand(["t"], "pubsub,pair", "tcp,inproc", poll_modes=(True, False))
    b = expand(["t"], "pair,pubsub", "inproc,tcp", poll_modes=(False, True))
    assert a == b


def test_expand_variants_and_sync_collapse_per_pattern():
    cells = expand(["t"], "all", "tcp", poll_modes=(False,), variants="all", sync_modes=("none", "xpub"))
    labels = {(c.pattern, c.label) for c in cells}
    assert ("clientserver", "shared") in labels and ("clientserver", "per-thread") in labels
    assert ("pubsub", "default+xpub") in labels and ("pubsub", "default") in labels
    assert not any(c.sync == "xpub" for c in cells if c.pattern != "pubsub")
    assert len(cells) == 10 + 5 + 1     # one each, + per-thread of the 5 thread-safe, + pubsub xpub
    only = expand(["t"], "clientserver,pair", "tcp", poll_modes=(False,), variants="per-thread")
    assert [c.label for c in only] == ["default", "per-thread"]
    assert len(expand(["t"], "clientserver", "tcp", poll_modes=(False,))) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(patterns="pair,foo"), "unknown pattern 'foo'"),
    (dict(transports="udp"), "unknown transport 'udp'"),
    (dict(patterns="pair", sync_modes=("xpub",)), "sync 'xpub' only applies to pubsub"),
    (dict(patterns="pair", variants="per-thread"), "variant 'per-thread' does not exist"),
    (dict(variants="bogus"), "unknown variant 'bogus'"),
    (dict(threads=0), "threads must be at least 1"),
    (dict(msgs=0), "msgs must be at least 1"),
])
def test_expand_rejects_bad_input(kwargs, message):
    with pytest.raises(LabError, match=message):
        expand(["t"], **kwargs)


def test_expand_accepts_pinned_targets():
    pins = parse_pins('[[target]]\nname="x"\nkind="wheel"\npyzmq="1"\nlibzmq="4"\ndraft=false\n'
                      'suite="bookworm"\npython="3.11"\n')
    cells = expand(pins, "pair", "tcp", poll_modes="off")
    assert [c.key for c in cells] == ["x/pair/tcp/default"]
    with pytest.raises(LabError, match="no targets"):
        expand([], "pair")


def test_every_pattern_has_variants():
    assert set(VARIANTS) == set(PATTERNS)


def test_the_verdict_schema_knows_every_pattern_of_the_catalog():
    import json
    from pathlib import Path
    schema = json.loads((Path(__file__).resolve().parents[1] / "lab/schemas/verdict.schema.json").read_text())
    enum = schema["properties"]["cell"]["properties"]["pattern"]["enum"]
    assert tuple(enum) == PATTERNS


# ---- topologies and pairs of two pins (docs/topology.md) -----------------------------------------

def test_threads_cells_keep_their_keys_and_dicts_exactly():
    """baseline/expected.json and every older results directory name threads cells this way."""
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", poll=True, sync="xpub", threads=3, msgs=7)
    assert cell.topology == "threads" and cell.sender == "" and cell.row == "pyzmq-25.1.2"
    assert cell.key == "pyzmq-25.1.2/pubsub/tcp/default+poll+xpub"
    assert cell.to_dict() == {"target": "pyzmq-25.1.2", "pattern": "pubsub", "transport": "tcp",
                              "variant": "default", "poll": True, "sync": "xpub", "threads": 3, "msgs": 7}
    assert "--topology" not in cell.scenario_argv(2, 0)


def test_other_topologies_and_pairs_add_to_the_key():
    c = Cell("pyzmq-25.1.2", "pushpull", "tcp", topology="containers")
    assert c.key == "pyzmq-25.1.2/pushpull/tcp/default@containers"
    assert c.column == ("pushpull", "tcp", "default@containers") and c.options == "default"
    p = Cell("pyzmq-25.1.2", "pushpull", "ipc", poll=True, topology="processes")
    assert p.key == "pyzmq-25.1.2/pushpull/ipc/default+poll@processes"
    mixed = Cell("pyzmq-26.4.0", "pubsub", "tcp", topology="containers", sender="libzmq-4.1.6")
    assert mixed.key == "libzmq-4.1.6>pyzmq-26.4.0/pubsub/tcp/default@containers"
    assert mixed.row == "libzmq-4.1.6>pyzmq-26.4.0" and mixed.sender_target == "libzmq-4.1.6"
    # the same pin on both sides is the diagonal: one cell, one key
    assert Cell("a", "pair", "tcp", topology="containers", sender="a") == Cell("a", "pair", "tcp", topology="containers")
    assert len({c.key, p.key, mixed.key, Cell("pyzmq-25.1.2", "pushpull", "tcp").key}) == 4


def test_scenario_argv_names_the_topology():
    argv = Cell("t", "pushpull", "tcp", threads=2, msgs=5, topology="containers").scenario_argv(2, 0)
    assert argv == ["--pattern", "pushpull", "--transport", "tcp", "--threads", "2", "--msgs", "5",
                    "--topology", "containers", "--stall", "2", "--sleep", "0"]
    assert argv[-6:-4] == ["--topology", "containers"]
    assert "processes" in Cell("t", "pair", "ipc", topology="processes").scenario_argv(2, 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(topology="vms"), "unknown topology 'vms' (known: threads, processes, containers)"),
    (dict(transport="inproc", topology="processes"), "topology processes needs ipc or tcp, not inproc "
                                                    "(inproc cannot cross processes)"),
    (dict(transport="ipc", topology="containers"), "topology containers needs tcp, not ipc"),
    (dict(transport="inproc", topology="containers"), "topology containers needs tcp, not inproc"),
    (dict(sender="other"), "a sender of another target (other) needs topology containers, not threads"),
    (dict(sender="other", transport="ipc", topology="processes"), "needs topology containers, not processes"),
])
def test_invalid_topologies_are_one_line_errors(kwargs, message):
    fields = dict(target="t", pattern="pubsub", transport="tcp") | kwargs
    with pytest.raises(LabError) as info:
        Cell(**fields)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_topology_dicts_round_trip_and_old_dicts_load():
    for cell in (Cell("a", "pubsub", "tcp", topology="containers", sender="b"),
                 Cell("a", "pair", "ipc", topology="processes"), Cell("a", "pair", "inproc")):
        assert Cell.from_dict(cell.to_dict()) == cell
    mixed = Cell("a", "pubsub", "tcp", topology="containers", sender="b").to_dict()
    assert mixed["topology"] == "containers" and mixed["sender"] == "b"
    old = {"target": "a", "pattern": "pair", "transport": "inproc", "variant": "default", "poll": False,
           "sync": "none", "threads": 2, "msgs": 3}           # a cell written before topologies
    assert Cell.from_dict(old) == Cell("a", "pair", "inproc", threads=2, msgs=3)


def test_topology_columns_sort_next_to_their_variant():
    cells = [Cell("t", "pushpull", tr, poll=p, topology=top) for tr, top in
             (("tcp", "containers"), ("tcp", "threads"), ("ipc", "processes"), ("tcp", "processes"))
             for p in (False, True)]
    ordered = [c.column for c in sorted(cells, key=lambda c: c.order)]
    assert ordered[:4] == [("pushpull", "ipc", "default@processes"), ("pushpull", "ipc", "default+poll@processes"),
                           ("pushpull", "tcp", "default"), ("pushpull", "tcp", "default@processes")]


def test_expand_collapses_topologies_over_the_transports_they_cross():
    cells = expand(["t"], "pair", "all", poll_modes="off", topologies="all")
    assert [(c.transport, c.topology) for c in cells] == [
        ("inproc", "threads"), ("ipc", "threads"), ("ipc", "processes"),
        ("tcp", "threads"), ("tcp", "processes"), ("tcp", "containers")]
    assert expand(["t"], "pair", "all", poll_modes="off") == expand(["t"], "pair", "all", poll_modes="off",
                                                                    topologies="threads")
    with pytest.raises(LabError, match=r"topology processes needs ipc or tcp, which is not among the "
                                       r"transports \(inproc\)"):
        expand(["t"], "pair", "inproc", topologies="threads,processes")
    with pytest.raises(LabError, match="unknown topology 'bogus'"):
        expand(["t"], "pair", "tcp", topologies="bogus")


def test_expand_pairs_every_receiver_with_each_sender():
    cells = expand(["a", "b"], "pushpull", "all", poll_modes="off", topologies="containers", senders=["a", "b"])
    assert [c.key for c in cells] == ["a/pushpull/tcp/default@containers", "b>a/pushpull/tcp/default@containers",
                                      "a>b/pushpull/tcp/default@containers", "b/pushpull/tcp/default@containers"]
    with pytest.raises(LabError, match="a sender of another target runs in containers only, not threads"):
        expand(["a"], "pushpull", "tcp", senders=["b"])


# ---- socket options (scenarios/options.py): one more axis, named in the label -------------------

from scenarios.options import SockOpts  # noqa: E402


def test_cells_without_socket_options_keep_their_keys_argv_and_dicts():
    """Every older cell: the same key, argv and dict byte for byte, whatever the topology."""
    for cell, key in ((Cell("pyzmq-25.1.2", "pubsub", "tcp", poll=True, sync="xpub"), "pyzmq-25.1.2/pubsub/tcp/default+poll+xpub"),
                      (Cell("a", "pushpull", "tcp", topology="containers", sender="b"), "b>a/pushpull/tcp/default@containers"),
                      (Cell("a", "clientserver", "ipc", "per-thread"), "a/clientserver/ipc/per-thread")):
        assert cell.key == key and cell.sockopts == SockOpts() and not cell.sockopts
        assert "sockopts" not in cell.to_dict()
        assert not {"--heartbeat", "--immediate", "--reconnect-ivl", "--hwm", "--xpub-nodrop"} & set(cell.scenario_argv(2, 0))
    assert Cell("a", "pair", "inproc").scenario_argv(2, 0) == [
        "--pattern", "pair", "--transport", "inproc", "--threads", "10", "--msgs", "1000", "--stall", "2", "--sleep", "0"]


@pytest.mark.parametrize("opts, suffix", [
    (SockOpts(heartbeat=(100,)), "+hb100"),
    (SockOpts(heartbeat=(100, 300)), "+hb100-300"),
    (SockOpts(heartbeat=(100, 300, 1000)), "+hb100-300-1000"),
    (SockOpts(immediate=True), "+immediate"),
    (SockOpts(reconnect_ivl=50), "+rivl50"),
    (SockOpts(reconnect_ivl=-1), "+rivl-1"),
    (SockOpts(hwm=10), "+hwm10"),
    (SockOpts(heartbeat=(100, 300), immediate=True, reconnect_ivl=50, hwm=10), "+hb100-300+immediate+rivl50+hwm10"),
])
def test_socket_options_are_a_label_suffix_before_the_topology(opts, suffix):
    cell = Cell("t", "pushpull", "tcp", sockopts=opts)
    assert cell.key == "t/pushpull/tcp/default" + suffix
    assert Cell("t", "pushpull", "tcp", poll=True, sockopts=opts, topology="containers").label \
        == "default+poll" + suffix + "@containers"
    assert SockOpts.from_label(suffix) == opts
    assert Cell.from_dict(cell.to_dict()) == cell
    assert cell.to_dict()["sockopts"] == opts.to_dict()
    argv = cell.scenario_argv(2, 0)
    assert argv[argv.index("--msgs") + 2:-4] == opts.argv()          # before --stall/--sleep
    assert "/" not in suffix and ":" not in suffix                   # part of file names (cells/<key>.json)


def test_nodrop_is_named_after_xpub_and_needs_it():
    cell = Cell("t", "pubsub", "tcp", sync="xpub", sockopts=SockOpts(hwm=10, xpub_nodrop=True))
    assert cell.key == "t/pubsub/tcp/default+xpub+hwm10+nodrop"
    assert cell.scenario_argv(2, 0)[-7:-4] == ["--hwm", "10", "--xpub-nodrop"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(sockopts=SockOpts(xpub_nodrop=True)), "--xpub-nodrop applies to the senders' XPUB: --pattern pubsub --sync xpub only"),
    (dict(pattern="pushpull", sync="none", sockopts=SockOpts(xpub_nodrop=True)), "--xpub-nodrop applies"),
    (dict(transport="inproc", sockopts=SockOpts(heartbeat=(100,))), "--heartbeat: for connection-oriented transports only (ipc, tcp), not inproc"),
    (dict(transport="inproc", sockopts=SockOpts(immediate=True, reconnect_ivl=5)), "--immediate/--reconnect-ivl: for connection"),
    (dict(sockopts="hb100"), "a cell's socket options must be a SockOpts"),
])
def test_invalid_socket_option_cells_are_one_line_errors(kwargs, message):
    fields = dict(target="t", pattern="pubsub", transport="tcp") | kwargs
    with pytest.raises(LabError) as info:
        Cell(**fields)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_hwm_applies_to_inproc_and_bad_dicts_are_lab_errors():
    assert Cell("t", "pushpull", "inproc", sockopts=SockOpts(hwm=0)).key == "t/pushpull/inproc/default+hwm0"
    with pytest.raises(LabError, match="bad socket options: unknown socket options linger"):
        Cell.from_dict(dict(Cell("t", "pair", "tcp").to_dict(), sockopts={"linger": 1}))


def test_expand_runs_each_option_set_where_it_applies():
    cells = expand(["t"], "pubsub,reqrep", "inproc,tcp", poll_modes="off", sync_modes="none,xpub",
                   sockopts="none,hb100-300+immediate,hwm10+nodrop")
    assert [c.key for c in cells] == [
        "t/pubsub/inproc/default", "t/pubsub/inproc/default+xpub", "t/pubsub/inproc/default+xpub+hwm10+nodrop",
        "t/pubsub/tcp/default", "t/pubsub/tcp/default+hb100-300+immediate",
        "t/pubsub/tcp/default+xpub", "t/pubsub/tcp/default+xpub+hb100-300+immediate",
        "t/pubsub/tcp/default+xpub+hwm10+nodrop",
        "t/reqrep/inproc/default", "t/reqrep/tcp/default", "t/reqrep/tcp/default+hb100-300+immediate"]
    assert expand(["t"], "pair", "tcp", poll_modes="off") == expand(["t"], "pair", "tcp", poll_modes="off", sockopts="none")
    assert [c.order for c in cells] == sorted(c.order for c in cells)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sockopts="nodrop"), "socket options nodrop apply to none of the chosen cells: --xpub-nodrop applies"),
    (dict(transports="inproc", sockopts="hb100"), "socket options hb100 apply to none of the chosen cells: --heartbeat: for"),
    (dict(sockopts="hb100:300"), "unknown socket option 'hb100:300'"),
    (dict(sockopts="hwm5+hwm6"), "socket option hwm given twice"),
    (dict(sockopts="hb100-300-50"), "TTL must be 100..6553599 ms"),
    (dict(sockopts=" , "), "no socket options given"),
])
def test_expand_rejects_bad_socket_options(kwargs, message):
    fields = dict(patterns="pushpull", transports="tcp") | kwargs
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        expand(["t"], **fields)


def test_reqrep_is_the_last_pattern_and_keeps_every_older_order():
    assert PATTERNS[-1] == "reqrep" and PATTERNS[:9] == (
        "pair", "pubsub", "pushpull", "clientserver", "routerdealer", "scattergather", "radiodish", "peer", "channel")
    assert VARIANTS["reqrep"] == ("default",)


# ---- faults (lab/faults.py): the last axis, containers only --------------------------------

def test_a_fault_cell_is_keyed_file_safe_logs_its_pings_and_outlasts_the_fault():
    from lab.faults import parse
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=5, msgs=200, topology="containers",
                fault=parse("partition:receiver@1.5+2"))
    assert cell.key == "pyzmq-25.1.2/pushpull/tcp/default~partition-rx-1.5-2@containers"
    assert not set(cell.key) & set(":=%")
    argv = cell.scenario_argv(5, 0)
    assert "--ping-log" in argv and "--full-drain" in argv
    assert argv[argv.index("--rate") + 1] == "44.444"   # 200 pings over 4.5 s
    assert Cell.from_dict(cell.to_dict()) == cell
    plain = Cell("pyzmq-25.1.2", "pushpull", "tcp", topology="containers")
    assert "fault" not in plain.to_dict() and "--ping-log" not in plain.scenario_argv(2, 0)


@pytest.mark.parametrize("spec, topology, words", [
    ("partition:rx@1+2", "threads", "needs topology containers"),
    ("pause:rx@after10000+1", "containers", "sends 10000 pings in all"),
])
def test_faults_that_cannot_run_are_refused_with_the_reason(spec, topology, words):
    from lab.faults import parse
    with pytest.raises(LabError, match=words):
        Cell("pyzmq-25.1.2", "pushpull", "tcp", topology=topology, fault=parse(spec))


def test_pub_binds_is_a_containers_only_pubsub_variant():
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", variant="pub-binds", topology="containers")
    assert cell.key == "pyzmq-25.1.2/pubsub/tcp/pub-binds@containers"
    assert cell.scenario_argv(2, 0)[cell.scenario_argv(2, 0).index("--variant") + 1] == "pub-binds"
    with pytest.raises(LabError, match="variant pub-binds needs topology containers"):
        Cell("pyzmq-25.1.2", "pubsub", "tcp", variant="pub-binds")
    # 'all' variants skip it where it cannot run; asking for it there is an error
    threads = expand(["pyzmq-25.1.2"], ["pubsub"], ["tcp"], variants="all", topologies="threads,containers")
    assert {(c.variant, c.topology) for c in threads} >= {("default", "threads"), ("pub-binds", "containers")}
    assert ("pub-binds", "threads") not in {(c.variant, c.topology) for c in threads}
    with pytest.raises(LabError, match="variant pub-binds needs --topology containers"):
        expand(["pyzmq-25.1.2"], ["pubsub"], ["tcp"], variants="pub-binds")


def test_a_receiver_kill_journals_what_the_receiver_takes_and_a_sender_kill_expects_two_senders():
    from lab.faults import parse
    rx = Cell("pyzmq-25.1.2", "reqrep", "tcp", topology="containers", fault=parse("kill:rx@1+1")).scenario_argv(5, 0)
    assert rx[rx.index("--journal") + 1] == RECEIVER_JOURNAL and "--incarnations" not in rx
    tx = Cell("pyzmq-25.1.2", "pushpull", "tcp", topology="containers", fault=parse("kill:tx@1+1")).scenario_argv(5, 0)
    assert tx[tx.index("--incarnations") + 1] == "2" and "--journal" not in tx


def test_a_fault_after_k_pings_asks_the_receiver_for_a_mark_and_paces_the_rest_to_outlast_it():
    from lab.faults import parse
    cell = Cell("pyzmq-25.1.2", "pushpull", "tcp", threads=5, msgs=200, topology="containers",
                fault=parse("partition:rx@after300+2"))
    argv = cell.scenario_argv(5, 0)
    assert argv[argv.index("--mark-after") + 1] == "300"
    rate = float(argv[argv.index("--rate") + 1])
    left = 200 - 300 / 5                     # pings per thread after the 300th in all
    assert abs(left / rate - (2 + 1.0)) < 0.01    # they last the fault and the 1 s tail


def test_expand_puts_each_fault_on_the_containers_cells_only():
    from lab.faults import parse
    cells = expand(["a"], "pushpull", "tcp", "off", topologies="threads,containers",
                   faults=(None, parse("pause:rx@1+1")))
    assert [c.label for c in cells] == ["default", "default@containers", "default~pause-rx-1-1@containers"]
    with pytest.raises(LabError, match="need --topology containers"):
        expand(["a"], "pushpull", "tcp", "off", faults=(parse("pause:rx@1+1"),))


def test_nowait_is_a_cell_setting_keyed_passed_and_kept():
    cell = Cell("pyzmq-25.1.2", "pubsub", "tcp", sync="xpub", topology="containers", nowait=True,
                sockopts=parse_sockopts("hwm100+buf4k+nodrop")[0])
    assert cell.key == "pyzmq-25.1.2/pubsub/tcp/default+xpub+nowait+hwm100+buf4k+nodrop@containers"
    assert "--nowait" in cell.scenario_argv(2, 0)
    assert cell.to_dict()["nowait"] is True and Cell.from_dict(cell.to_dict()) == cell
    blocking = Cell("pyzmq-25.1.2", "pubsub", "tcp")
    assert "nowait" not in blocking.to_dict() and "--nowait" not in blocking.scenario_argv(2, 0)
    assert {c.nowait for c in expand(["pyzmq-25.1.2"], ["pushpull"], ["tcp"], nowait=True)} == {True}
    with pytest.raises(LabError, match="nowait must be true or false"):
        Cell("pyzmq-25.1.2", "pubsub", "tcp", nowait="yes")
    from lab import schemas
    from tests.factories import make_verdict
    schemas.validate("verdict", make_verdict(["ok"], cell).to_dict())      # the schema knows it
