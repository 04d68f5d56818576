"""Fuzzed graph files: every mutated example loads or is refused with one clear error.

The mutations (wrong types, huge numbers and shapes, deep nesting, unknown ops,
bad or cyclic edges, lone surrogates, non-finite numbers, missing fields,
duplicated ids…) live in ``tests/fuzz_graph_files.py``, which also runs them
at scale: ``python -m tests.fuzz_graph_files --examples 5000``.
"""

import copy
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_graph_files import BASES, check, mutate, random_file, small_memory, time_limit


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_mutated_graph_files_load_or_give_one_clear_error(tmp_path_factory, rng):
    """Load, shape inference and ``eval`` (text and --json) never raise anything else."""
    folder = tmp_path_factory.mktemp("fuzz")
    with small_memory(), time_limit(30):
        assert check(random_file(rng), str(folder)) in ("refused", "evaluated", "eval_error")


def test_the_mutations_reach_every_stage(tmp_path):
    """Not every input is refused at load: some load and run, some fail in ``eval``."""
    seen = set()
    with small_memory():
        for i in range(400):
            seen.add(check(random_file(random.Random(i)), str(tmp_path)))
            if len(seen) == 3:
                break
    assert seen == {"refused", "evaluated", "eval_error"}


def test_a_mutation_changes_the_file():
    base = json.dumps(BASES["abc"], ensure_ascii=True)
    assert sum(mutate(copy.deepcopy(BASES["abc"]), random.Random(i)) != base
               for i in range(50)) >= 45

