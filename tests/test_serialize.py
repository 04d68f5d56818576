"""Graph files: exact round trips, one clear error for every kind of bad file, never code."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import FileFormatError
from core.executor import Executor
from core.graph import Graph
from core.serialize import (
    FORMAT_VERSION,
    copy_graph,
    dumps,
    graph_to_dict,
    load_graph,
    loads,
    save_graph,
)
from examples import example_path
from examples.textbook import TEXTBOOK

GOOD = example_path("net_222").read_text("utf-8")


@pytest.mark.parametrize("stem", sorted(TEXTBOOK))
def test_save_load_round_trips_exactly(stem, tmp_path):
    """save → load → save gives the same file, the same values and the same run."""
    g = load_graph(example_path(stem))
    path = tmp_path / "g.json"
    save_graph(g, path)
    g2 = load_graph(path)
    assert graph_to_dict(g2) == graph_to_dict(g)
    assert dumps(g2) == dumps(g)
    e1, e2 = Executor(g).run(), Executor(g2).run()
    for k in e1.values:
        assert np.array_equal(e1.values[k], e2.values[k])


def test_float64_values_keep_every_bit(tmp_path):
    from core.graph import Graph

    g = Graph()
    v = np.random.default_rng(3).normal(size=(7, 3)) * 1e-5
    g.add("parameter", value=v, name="w")
    save_graph(g, tmp_path / "w.json")
    assert np.array_equal(load_graph(tmp_path / "w.json").node("w").value, v)


def mutate(path, value):
    data = json.loads(GOOD)
    obj = data
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return json.dumps(data)


BAD = [
    ("truncated", GOOD[: len(GOOD) // 2], "not valid JSON"),
    ("empty", "", "line 1, column 1"),
    ("not an object", "[1, 2]", "top level"),
    ("no version", mutate(["format_version"], KeyError), "missing field 'format_version'"),
    ("future version", mutate(["format_version"], FORMAT_VERSION + 1), "newer"),
    ("version as text", mutate(["format_version"], "1"), "format_version: must be an integer"),
    ("unknown op", mutate(["nodes", 6, "op"], "matmull"), "nodes[6].op: unknown op 'matmull'"),
    ("param wrong type", mutate(["nodes", 12, "params", "reduction"], 3),
     "nodes[12].params.reduction"),
    ("unknown param", mutate(["nodes", 8, "params"], {"speed": 1}), "no parameter 'speed'"),
    ("node not object", mutate(["nodes", 2], 7), "nodes[2]: each node must be an object"),
    ("ragged value", mutate(["nodes", 1, "value"], [[1, 2], [3]]), "nodes[1].value"),
    ("text value", mutate(["nodes", 1, "value"], "abc"), "nodes[1].value"),
    ("dangling edge", mutate(["edges", 0, "from"], ["n99", "out"]), "edges[0].from: no node"),
    ("bad port", mutate(["edges", 0, "to"], ["n7", "zz"]), "edges[0]: node 'x·W1' has no input"),
    ("edge shape", mutate(["edges", 1], {"from": "n1"}), "edges[1].from: must be a list"),
    ("duplicate id", mutate(["nodes", 1, "id"], "n1"), "nodes[1].id"),
    ("bad layout", mutate(["layout", "n1"], [1]), "layout.n1: must be [x, y]"),
    ("bad loss", mutate(["loss"], "n404"), "loss: no node"),
    ("nan", GOOD.replace('"value": 0.35', '"value": NaN', 1), "NaN is not allowed"),
    ("bad dtype", mutate(["dtype"], "int8"), "dtype: must be one of"),
]


@pytest.mark.parametrize("label,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_files_give_one_clear_error(label, text, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(text, "utf-8")
    with pytest.raises(FileFormatError) as info:
        load_graph(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_cycle_in_file_is_refused():
    data = json.loads(GOOD)
    data["edges"].append({"from": ["n13", "out"], "to": ["n7", "a"]})
    data["edges"] = [e for e in data["edges"] if e["to"] != ["n7", "a"]] + [data["edges"][-1]]
    with pytest.raises(FileFormatError, match="cycle"):
        loads(json.dumps(data))


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        load_graph(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\x80\x81\x00PK")
    with pytest.raises(FileFormatError, match="not a UTF-8 text file"):
        load_graph(tmp_path / "bin.json")
    with pytest.raises(FileFormatError, match="folder"):
        load_graph(tmp_path)


def test_loading_never_runs_code(tmp_path):
    """A file that names Python things is only data: it fails as an unknown op."""
    text = mutate(["nodes", 0, "op"], "__import__('os').system('touch pwned')")
    with pytest.raises(FileFormatError, match="unknown op"):
        loads(text)
    assert not (tmp_path / "pwned").exists()


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    g = load_graph(example_path("abc"))
    path = tmp_path / "g.json"
    save_graph(g, path)
    before = path.read_text("utf-8")
    import core.serialize as ser

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ser.os, "fsync", boom)
    with pytest.raises(OSError):
        save_graph(load_graph(example_path("xyz")), path)
    assert path.read_text("utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]


# --------------------------------------------------------------- property-based
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_give_only_clear_errors(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        loads(text)
    except FileFormatError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
    | st.text(max_size=5) | st.sampled_from(["n1", "n2", "out", "a", "x", "input", "add"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "op", "name", "params", "value", "from", "to",
                                       "shape", "role", "a", "b"]), children, max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_valid_files_give_only_clear_errors(data):
    """Replace one field anywhere in a valid file with junk: a graph or a FileFormatError."""
    doc = json.loads(GOOD)
    paths = []

    def walk(obj, path):
        paths.append(path)
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, path + [k])
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, path + [i])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths[1:]))
    junk = data.draw(json_values)
    obj = doc
    for key in path[:-1]:
        obj = obj[key]
    if data.draw(st.booleans()) and isinstance(obj, dict):
        del obj[path[-1]]
    else:
        obj[path[-1]] = junk
    try:
        g = loads(json.dumps(doc))
    except FileFormatError:
        return
    assert len(g.nodes) > 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, len(GOOD.rstrip()) - 1))
def test_truncated_files_give_only_clear_errors(n):
    with pytest.raises(FileFormatError):
        loads(GOOD[:n])


def _dense_file():
    from core.graph import Graph

    g = Graph()
    x = g.add("input", value=np.ones((2, 3)), name="x", shape=[None, 3])
    d = g.add("dense", x, name="fc", units=4)
    g.initialize(0)
    g.add("sum", d, name="s")
    return graph_to_dict(g)


def test_weight_of_wrong_shape_is_refused_naming_it():
    """A dense bias stored as (1, 1) for 4 units is an error, not a silent broadcast."""
    data = _dense_file()
    data["nodes"][1]["weights"]["b"] = [[0.0]]
    with pytest.raises(FileFormatError, match=r"nodes\[1\].weights.b: has shape \(1, 1\).*\(4,\)"):
        loads(json.dumps(data))


def test_value_must_match_declared_shape():
    data = _dense_file()
    data["nodes"][0]["value"] = [[1.0, 2.0]]
    with pytest.raises(FileFormatError, match=r"nodes\[0\].value: has shape \(1, 2\).*\[None, 3\]"):
        loads(json.dumps(data))


@pytest.mark.parametrize("value", ["3.0", [["1", "2"]], True, None])
def test_text_and_booleans_are_not_numbers(value):
    with pytest.raises(FileFormatError, match=r"nodes\[1\].value"):
        loads(mutate(["nodes", 1, "value"], value))


def test_infinite_layout_is_refused():
    with pytest.raises(FileFormatError, match="layout.n1: coordinates must be finite"):
        loads(mutate(["layout", "n1"], [0.0, 0.0]).replace('"n1": [0.0, 0.0]', '"n1": [1e999, 0]'))


def test_node_names_must_not_be_empty_or_another_nodes_id():
    with pytest.raises(FileFormatError, match=r"nodes\[2\].name: .*empty"):
        loads(mutate(["nodes", 2, "name"], " "))
    with pytest.raises(FileFormatError, match=r"nodes\[2\].name: 'n1' is the id of another"):
        loads(mutate(["nodes", 2, "name"], "n1"))


def test_batch_norm_state_is_checked_like_weights():
    from core.graph import Graph

    g = Graph()
    x = g.add("input", value=np.ones((4, 3)), name="x", shape=[None, 3])
    bn = g.add("batch_norm", x, name="bn")
    g.initialize(0)
    bn.state.update(running_mean=np.zeros(3), running_var=np.ones(3))
    data = graph_to_dict(g)
    assert loads(json.dumps(data)).node("bn").state["running_var"].shape == (3,)
    data["nodes"][1]["state"]["running_mean"] = [0.0, 0.0]
    with pytest.raises(FileFormatError, match=r"nodes\[1\].state.running_mean: has shape \(2,\)"):
        loads(json.dumps(data))
    data["nodes"][1]["state"] = {"speed": [1.0]}
    with pytest.raises(FileFormatError, match="keeps no state 'speed'"):
        loads(json.dumps(data))


# ------------------------------------------------- issue 10: strict types, big sizes
def _example(stem):
    return json.loads(example_path(stem).read_text("utf-8"))


def _set(data, path, value):
    obj = data
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    return json.dumps(data)


STRICT = [
    ("lenet5", ["nodes", 1, "params", "kernel"], "55", "nodes[1].params.kernel", "2 integers"),
    ("lenet5", ["nodes", 0, "params", "shape"], "42", "nodes[0].params.shape",
     "a list of positive integers"),
    ("lenet5", ["nodes", 8, "params", "units"], "4", "nodes[8].params.units", "an integer"),
    ("keras_mnist_cnn", ["nodes", 6, "params", "p"], "0.5", "nodes[6].params.p",
     "a finite number"),
    ("lenet5", ["nodes", 1, "params", "kernel"], [5, True], "nodes[1].params.kernel",
     "an integer"),
    ("lenet5", ["nodes", 0, "params", "shape"], [None, True, 28, 28], "nodes[0].params.shape",
     "an integer"),
    ("lenet5", ["nodes", 1, "params", "mode"], ["cross_correlation"], "nodes[1].params.mode",
     "must be one of"),
    ("net_222", ["nodes", 1, "value"], [[True, 0.5], [0.1, 0.2]], "nodes[1].value",
     "rectangular list of numbers"),
]


@pytest.mark.parametrize("stem,path,value,where,expected", STRICT,
                         ids=[f"{s[2]!r}" for s in STRICT])
def test_text_and_booleans_are_not_read_as_numbers(stem, path, value, where, expected):
    """``"kernel": "55"`` was read as (5, 5) and ``"shape": "42"`` as (4, 2)."""
    with pytest.raises(FileFormatError) as info:
        loads(_set(_example(stem), path, value))
    assert f"{where}: " in str(info.value) and expected in str(info.value)


def test_overflowing_number_in_a_parameter_is_refused():
    """``-1e400`` reads as −inf: a graph that then could not be saved."""
    text = _set(_example("net_222"), ["nodes", 1, "params", "fill"], 12345.5)
    with pytest.raises(FileFormatError, match=r"nodes\[1\].params.fill: .*finite number"):
        loads(text.replace("12345.5", "-1e400"))


def test_huge_integer_layout_coordinate_is_a_clear_error():
    """A 400-digit x coordinate raised OverflowError."""
    text = _set(_example("abc"), ["layout", "n1"], [1, 0]).replace('"n1": [1, 0]',
                                                                    f'"n1": [{"9" * 400}, 0]')
    with pytest.raises(FileFormatError, match="layout.n1: coordinates must be finite"):
        loads(text)


def test_lone_surrogate_in_a_name_is_refused_with_its_path():
    """A name "\\ud800" crashed ``eval``'s output; it cannot be saved as UTF-8 either."""
    text = json.dumps(_example("abc")).replace('"name": "a"', '"name": "\\ud800"')
    with pytest.raises(FileFormatError, match=r"nodes\[0\].name: .*lone surrogate"):
        loads(text)
    pair = json.dumps(_example("abc")).replace('"name": "a"', '"name": "\\ud83d\\ude00"')
    assert loads(pair).node("n1").name == "\U0001F600"  # a proper pair is fine


def test_dimension_beyond_numpys_index_type_is_refused_at_load():
    with pytest.raises(FileFormatError, match=r"nodes\[0\].params.shape: .*≤ 9223372036854775807"):
        loads(_set(_example("lenet5"), ["nodes", 0, "params", "shape"], [1e19, 10]))


# ------------------------------------------------------------------- saving
def test_stale_temp_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    """A save killed mid-write left ``.g.json.*.tmp`` behind for ever."""
    import subprocess
    import sys

    path = tmp_path / "g.json"
    code = ("import os, signal, core.serialize as s\n"
            "s.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"s.atomic_write({str(path)!r}, 'half')\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    (tmp_path / ".other.json.1-abc.tmp").write_text("not ours")
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    save_graph(load_graph(example_path("abc")), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.1-abc.tmp", "g.json"]


def test_saving_keeps_the_mode_of_the_file_and_new_files_follow_the_umask(tmp_path):
    """Saving over a 0644 file made it 0600."""
    import os
    import stat

    g = load_graph(example_path("abc"))
    path = tmp_path / "g.json"
    path.write_text("{}")
    path.chmod(0o640)
    save_graph(g, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    old = os.umask(0o022)
    try:
        save_graph(g, tmp_path / "new.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    """Saving through a link replaced the link by a plain file."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "g.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    save_graph(load_graph(example_path("abc")), link)
    assert link.is_symlink() and link.resolve() == target
    assert load_graph(target).node("f").op_id == "add"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]
    assert [p.name for p in real_dir.iterdir()] == ["g.json"]


def test_loading_does_no_per_edge_graph_search(monkeypatch):
    """Each edge ran a networkx path search: loading a long chain took quadratic time.

    Counted, not timed: loading and evaluating a 2,000-node chain (edges listed
    backwards, the worst case for a search per edge) must search no path.
    """
    import networkx as nx

    nodes = [{"id": "n1", "name": "x", "op": "input", "value": 0.5}]
    nodes += [{"id": f"n{i}", "op": "tanh"} for i in range(2, 2001)]
    edges = [{"from": [f"n{i - 1}", "out"], "to": [f"n{i}", "x"]} for i in range(2, 2001)]
    text = json.dumps({"format_version": 1, "nodes": nodes, "edges": edges[::-1],
                       "loss": "n2000"})
    calls = {"path": 0}

    def counting(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(nx, "has_path", counting("path", nx.has_path))
    g = loads(text)
    g.initialize(0)
    Executor(g).run()
    assert calls["path"] == 0
    assert len(g.order()) == 2000 and g.order()[-1].name == "n2000"


def test_copy_graph_is_a_deep_copy_without_subscribers():
    """copy_graph gives the same file, weights included, sharing no array and no subscriber."""
    g = load_graph(example_path("lenet5"))
    g.initialize(0)
    seen = []
    g.node_changed.subscribe(seen.append)
    c = copy_graph(g)
    assert graph_to_dict(c) == graph_to_dict(g)
    assert c.layout == g.layout and c.loss == g.loss
    for nid, node in g.nodes.items():
        for w, arr in node.weights.items():
            assert np.array_equal(c.nodes[nid].weights[w], arr)
            assert not np.shares_memory(c.nodes[nid].weights[w], arr)
    c.rename(next(iter(c.nodes)), "renamed")
    assert seen == []
    assert not hasattr(Graph, "copy")  # the copy goes through the file format, in serialize
