"""`jobkit/run/heap.py`: the training process keeps freed tensor memory (glibc) unless told otherwise,
and that removes the page faults of a step that frees and reallocates large tensors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit import testing
from jobkit.run import heap, runner

glibc = pytest.mark.skipif(heap.choice({}) != "keep", reason="glibc only")


@pytest.mark.parametrize("env,expected", [
    ({}, "keep"),
    ({"JOBKIT_MALLOC": "system"}, "system"),
    ({"JOBKIT_MALLOC": " Keep "}, "keep"),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, "user-set"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "user-set"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "preloaded"),
])
@glibc
def test_the_choice_leaves_alone_what_the_user_chose(env, expected):
    assert heap.choice(env) == expected


def test_a_wrong_value_fails_the_run_in_one_line_that_names_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv(heap.ENV, "always")
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 3})
    with pytest.raises(runner.RunFailed, match="JOBKIT_MALLOC='always': use keep .* or system"):
        runner.run(run)
    failed = [e for e in run.events() if e["event"] == "failed"]
    assert failed and "\n" not in failed[-1]["error"]


STEPS = r"""
import json, resource, torch
from torch import nn
from jobkit.run import heap
done = heap.keep_freed_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
layers = []
for _ in range(6):
    layers += [nn.Linear(1500, 1500), nn.ReLU()]
model = nn.Sequential(*layers[:-1])
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
faults = []
for _ in range(12):  # the shape of a CPU training step: gradients and activations freed and made again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.randn(16, 1500)
    opt.zero_grad(set_to_none=True)
    loss = (model(x) - x).pow(2).mean()
    loss.backward()
    opt.step()
    loss.item()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"done": done, "faults": faults}))
"""


@glibc
def test_a_training_step_reuses_kept_memory_instead_of_faulting_it_in_again():
    def steps(mode: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in heap.GLIBC_KNOBS}
        out = subprocess.run([sys.executable, "-c", STEPS], env={**env, heap.ENV: mode}, capture_output=True,
                             text=True, check=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])

    kept, system = steps("keep"), steps("system")
    assert kept["done"] == "keep" and system["done"] == "system"
    gradient_pages = 6 * 1501 * 1500 * 4 // 4096  # one step's gradients, in 4 KiB pages
    # after the first steps have grown the heap, a step's memory comes back without page faults;
    # glibc's own behaviour varies from start to start (measured here: 0.1-3 steps' gradients a step)
    assert sum(kept["faults"][3:]) < 2 * gradient_pages, kept
    assert sum(kept["faults"][3:]) <= sum(system["faults"][3:]), (kept, system)


def test_a_run_records_what_it_did_with_the_heap(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 3})
    runner.run(run)
    started = [e for e in run.events() if e["event"] == "started"][-1]
    assert started["heap"] == heap.choice(os.environ)
