"""The headless command line: bad files exit non-zero with one clear error, help works."""

import json
import subprocess
import sys

from examples import example_path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True)


def test_eval_bad_file_exits_nonzero_with_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1, "nodes": [{"id": "n1", "op": "sigmod"}], "edges": []}')
    out = cli("eval", str(bad))
    assert out.returncode == 2
    assert "nodes[0].op: unknown op 'sigmod' (did you mean 'sigmoid'?)" in out.stderr
    assert "Traceback" not in out.stderr


def test_eval_missing_file(tmp_path):
    out = cli("gradcheck", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "no such file" in out.stderr


def test_eval_text_output_lists_values_and_grads():
    out = cli("eval", str(example_path("xyz")))
    assert out.returncode == 0
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("z "))
    assert "value -4" in line and "grad 3" in line


def test_gradcheck_json_reports_every_tensor():
    out = cli("gradcheck", str(example_path("sigmoid_neuron")), "--json")
    rows = json.loads(out.stdout)
    assert {r["node"] for r in rows} == {"w0", "x0", "w1", "x1", "w2"}
    assert all(r["rel_error"] < 1e-7 for r in rows)


def test_nan_in_eval_names_the_node(tmp_path):
    from core.graph import Graph
    from core.serialize import save_graph

    g = Graph()
    x = g.add("input", value=-1.0, name="x")
    g.add("log", x, name="lnx")
    save_graph(g, tmp_path / "nan.json")
    out = cli("eval", str(tmp_path / "nan.json"))
    assert out.returncode == 2 and "node 'lnx'" in out.stderr and "NaN" in out.stderr


def test_help_and_version():
    assert "eval" in cli("--help").stdout or "eval" in cli("eval", "--help").stdout
    assert cli("--version").stdout.startswith("backprop-studio ")


def test_gradcheck_needs_a_positive_element_count():
    out = cli("gradcheck", str(example_path("abc")), "--max-elements", "0")
    assert out.returncode == 2 and "must be at least 1" in out.stderr


def test_unreadable_path_is_a_clear_error(tmp_path):
    out = cli("eval", str(tmp_path))
    assert out.returncode == 2 and "folder" in out.stderr and "Traceback" not in out.stderr


def test_eval_of_a_name_with_a_lone_surrogate_is_one_clear_error(tmp_path):
    """A node named "\\ud800" made ``eval`` crash while printing (text and --json)."""
    text = example_path("abc").read_text("utf-8").replace('"name": "a"', '"name": "\\ud800"')
    (tmp_path / "s.json").write_text(text, "utf-8")
    for extra in ((), ("--json",)):
        out = cli("eval", str(tmp_path / "s.json"), *extra)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "nodes[0].name: text holds a lone surrogate" in out.stderr


def test_eval_prints_names_the_terminal_cannot_encode(tmp_path):
    """On an ASCII terminal a name like 'x·W1' is escaped, not a UnicodeEncodeError."""
    import os

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    out = subprocess.run([sys.executable, "-m", "app", "eval", str(example_path("net_222"))],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "x\\xb7W1" in out.stdout


def test_eval_of_a_huge_parameter_is_one_clear_error(tmp_path):
    """A [1000000, 1000000] parameter raised MemoryError; now the node and the size are named."""
    data = json.loads(example_path("net_222").read_text("utf-8"))
    data["nodes"][1]["params"]["shape"] = [1000000, 1000000]
    del data["nodes"][1]["value"]
    (tmp_path / "big.json").write_text(json.dumps(data), "utf-8")
    out = cli("eval", str(tmp_path / "big.json"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "shape (1000000, 1000000) needs 7.3 TiB" in out.stderr
    assert f"node '{data['nodes'][1]['name']}'" in out.stderr
