"""How a job ended when the run could not say (OOM kill, lost node), from Slurm's words: the reading of
`sacct -D`, the sentence status shows, and what submitting again does (more memory or nothing; never
the failed node)."""
from __future__ import annotations

import os
from dataclasses import replace

import pytest

from jobkit.observe import lifecycle
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.plan.endings import expand_nodes, mem_mb, read_history
from jobkit.plan.spec import JobSpec, Resources
from jobkit.run import memory, nodefail
from jobkit.slurm import JobEnvironment
from jobkit.state import Event, State
from jobkit.store import RunDir
from jobkit.submit import aftermath

# What this cluster's sacct printed for a job whose step OverMemoryKill ended (--mem=300M; no cgroups).
OVER_MEMORY_KILL = """811700|FAILED|9:0|n1||300M
811700.batch|FAILED|9:0|n1|10792K|
811700.0|CANCELLED by 0|0:9|n1|935040K|
"""
# A job cancelled while well under its memory: killed by signal too, but not for memory.
CANCELLED = """811701|CANCELLED by 0|0:0|n1||100M
811701.batch|CANCELLED|0:15|n1|5000K|
811701.0|CANCELLED|0:9|n1|20480K|
"""


def test_a_step_killed_past_its_memory_is_out_of_memory():
    ending = read_history(OVER_MEMORY_KILL)["811700"]
    assert ending.oom and ending.max_rss_mb == 913 and ending.failed_nodes == []


def test_a_job_of_two_nodes_is_judged_per_node():
    # what this cluster's sacct printed: --mem=500M on two nodes shows as ReqMem 1000M; one task per node
    text = ("811719|FAILED|9:0|n[1-2]||1000M|\n811719.batch|FAILED|9:0|n1|12492K||1\n"
            "811719.0|CANCELLED by 0|0:9|n[1-2]|514024K||2\n")
    assert read_history(text)["811719"].oom
    # two tasks on one node, each under the limit, together over it
    assert read_history("9|FAILED|9:0|n1||1000M|\n9.0|CANCELLED|0:9|n1|500000K||2\n")["9"].oom
    assert not read_history("9|FAILED|9:0|n1||1000M|\n9.0|CANCELLED|0:9|n1|500000K||1\n")["9"].oom
    # per CPU memory cannot be compared from these fields; per node (`n`) is taken as it is
    assert not read_history("9|FAILED|9:0|n1||1000Mc|\n9.0|CANCELLED|0:9|n1|990000K||1\n")["9"].oom
    assert read_history("9|FAILED|9:0|n[1-2]||1000Mn|\n9.0|CANCELLED|0:9|n[1-2]|990000K||2\n")["9"].oom


def test_a_cancelled_job_under_its_memory_is_not():
    assert not read_history(CANCELLED)["811701"].oom


def test_slurms_own_out_of_memory_word_counts_on_the_job_or_a_step():
    assert read_history("5|OUT_OF_MEMORY|0:125|n2||4G\n")["5"].oom
    assert read_history("6_3|FAILED|0:0|n2||4Gn\n6_3.0|OUT_OF_MEMORY|0:125|n2|100K|\n")["6_3"].oom


def test_only_the_latest_attempt_decides_oom_and_every_lost_node_is_kept():
    text = ("7|NODE_FAIL|0:0|n2||1G\n7.0|CANCELLED|0:9|n2|10K|\n"
            "7|OUT_OF_MEMORY|0:125|n1||1G\n"
            "7|RUNNING|0:0|n[1,3]||2G\n7.0|RUNNING|0:0|n1||\n")
    ending = read_history(text)["7"]
    assert ending.attempts == 3 and not ending.oom and ending.failed_nodes == ["n2"]


@pytest.mark.parametrize("text, names", [("n2", ["n2"]), ("n[1-3,5]", ["n1", "n2", "n3", "n5"]),
                                         ("gpu[08-10],cpu1", ["gpu08", "gpu09", "gpu10", "cpu1"]),
                                         ("None assigned", []), ("", [])])
def test_node_lists_expand(text, names):
    assert expand_nodes(text) == names


def test_memory_words():
    assert (mem_mb("935040K"), mem_mb("4G"), mem_mb("300Mn"), mem_mb("1.5G"), mem_mb(""), mem_mb("0")) == \
        (913, 4096, 300, 1536, None, None)


def test_the_sentence_names_step_memory_and_the_fix():
    assert memory.oom_message(120, 4096, "r-1") == \
        "out of memory at step 120 (mem 4G): `jobkit resume r-1 --set mem=8G`"
    assert memory.oom_message(3, 300, "r") == "out of memory at step 3 (mem 300M): `jobkit resume r --set mem=1G`"


def _summary(**kw) -> RunSummary:
    return RunSummary(run_id="r-1", sweep="s", workload="toy", path="/x", params={}, **kw)


def test_status_names_an_oom_kill_that_slurm_calls_failed():
    s = _summary(state=State.FAILED, step=42, job_id="811700", executor="slurm")
    assert lifecycle.ended_by_scheduler(State.RUNNING, s.state)
    lifecycle.name_ending(s, read_history(OVER_MEMORY_KILL)["811700"], 300)
    assert s.state == State.OUT_OF_MEMORY
    assert s.error == "out of memory at step 42 (mem 300M): `jobkit resume r-1 --set mem=1G`"


def test_status_names_the_lost_node():
    s = _summary(state=State.NODE_FAIL, step=9)
    lifecycle.name_ending(s, read_history("8|NODE_FAIL|0:0|n2||1G\n")["8"], 1024)
    assert s.failed_nodes == ["n2"] and "node n2 failed at step 9" in s.error and "--exclude=n2" in s.error


def test_a_run_that_ended_itself_is_not_asked_about():
    assert not lifecycle.ended_by_scheduler(State.FAILED, State.FAILED)  # its own failed event
    assert not lifecycle.ended_by_scheduler(State.RUNNING, State.COMPLETED)
    assert not lifecycle.ended_by_scheduler(State.RUNNING, State.REQUEUED)


def _run(tmp_path, mem_mb=4096) -> RunDir:
    spec = JobSpec(sweep="s", name="r", workload="toy", params={}, resources=Resources(mem_mb=mem_mb))
    return RunDir.create(tmp_path, spec)


def test_resume_after_oom_needs_more_memory(tmp_path):
    run = _run(tmp_path)
    spec = run.spec()
    current = _summary(state=State.OUT_OF_MEMORY, step=7)
    current.run_id = run.run_id
    action, reason = aftermath.memory_guard(spec, run.path, current, "resume", "unfinished")
    assert action == aftermath.OOM_ACTION
    assert reason == f"out of memory at step 7 (mem 4G): `jobkit resume {run.run_id} --set mem=8G`"
    more = spec.with_resources(replace(spec.resources, mem_mb=8192))
    action, reason = aftermath.memory_guard(more, run.path, current, "resume", "unfinished")
    assert action == "resume" and "4096M → 8192M" in reason
    # any other ending resumes as before
    assert aftermath.memory_guard(spec, run.path, _summary(state=State.FAILED), "resume", "x") == ("resume", "x")


def test_resume_after_a_lost_node_excludes_it():
    res = Resources(exclude="n9")
    out, note = aftermath.avoid_failed_nodes(res, _summary(state=State.NODE_FAIL, failed_nodes=["n2", "n9"]))
    assert out.exclude == "n9,n2" and note and "n2" in note
    assert aftermath.avoid_failed_nodes(res, _summary()) == (res, None)


def test_a_supervisor_oom_event_makes_the_folder_say_out_of_memory(tmp_path):
    run = _run(tmp_path)
    run.event(Event.STARTED, attempt=1, step=0)
    run.event(Event.FAILED, step=3, error=memory.oom_message(3, 4096, run.run_id), reason=memory.OOM_REASON)
    s = summarize(run)
    assert s.state == State.OUT_OF_MEMORY and s.error.startswith("out of memory at step 3")


def test_a_restart_after_node_fail_names_the_node_once_and_leaves_it(tmp_path):
    run = _run(tmp_path)
    env = JobEnvironment(executor="slurm", job_id="8")
    history = "8|NODE_FAIL|0:0|n2||1G\n8|RUNNING|0:0|n2||1G\n"
    assert nodefail.after_restart(run, env, history, here="n2") == (["n2"], True)
    run.event(Event.NODE_FAILED, nodes=["n2"], message=nodefail.message("n2"))
    assert nodefail.after_restart(run, env, history, here="n1") == ([], False)
    assert nodefail.lost_nodes(run) == ["n2"] and "n2" in summarize(run).failed_nodes
    assert nodefail.after_restart(run, env, "8|RUNNING|0:0|n1||1G\n", here="n1") == ([], False)


def test_oom_count_from_cgroup_v2_and_v1(tmp_path):
    (tmp_path / "v2" / "job").mkdir(parents=True)
    (tmp_path / "v2" / "job" / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    (tmp_path / "cg2").write_text("0::/job\n")
    assert memory.oom_kills(tmp_path / "cg2", tmp_path / "v2") == 2
    (tmp_path / "v1" / "memory" / "slurm").mkdir(parents=True)
    (tmp_path / "v1" / "memory" / "slurm" / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    (tmp_path / "cg1").write_text("5:cpuacct,cpu:/slurm\n4:memory:/slurm\n")
    assert memory.oom_kills(tmp_path / "cg1", tmp_path / "v1") == 5
    (tmp_path / "cg0").write_text("0::/nowhere\n")
    assert memory.oom_kills(tmp_path / "cg0", tmp_path / "v2") is None
    assert memory.oom_kills(tmp_path / "missing", tmp_path) is None
