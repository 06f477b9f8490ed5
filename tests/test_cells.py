import pytest

from lab.cells import PATTERNS, TRANSPORTS, VARIANTS, Cell, expand, parse_list, parse_poll_modes
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
    # 9 patterns x 3 transports x 2 poll modes, one variant each, per target
    assert len(cells) == 2 * 9 * 3 * 2
    assert [c.target for c in cells[:54]] == ["b-target"] * 54      # targets keep pin order
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
    assert len(cells) == 9 + 5 + 1      # one each, + per-thread of the 5 thread-safe, + pubsub xpub
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
