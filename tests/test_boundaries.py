"""One home per concept, checked: the scheduler boundary, the state names, the collector's ignorance
of workloads, and that --show-script is what is sent."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

JOBKIT = Path(__file__).resolve().parents[1] / "jobkit"
SOURCES = {p.relative_to(JOBKIT.parent).as_posix(): p.read_text() for p in JOBKIT.rglob("*.py")}


def _where(pattern: str) -> set[str]:
    return {name for name, text in SOURCES.items() if re.search(pattern, text, flags=re.M)}


def test_only_the_scheduler_adapter_runs_slurm_commands_or_imports_submitit():
    assert _where(r"""\[\s*["'](scontrol|sacct|squeue|scancel|sacctmgr|sbatch)["']\s*,""") == {"jobkit/slurm.py"}
    assert _where(r"^\s*(import submitit|from submitit)") == {"jobkit/slurm.py"}


def test_state_names_live_in_the_state_module():
    names = "PENDING|RUNNING|COMPLETED|FAILED|CANCELLED|TIMEOUT|PREEMPTED|REQUEUED|STOPPED|BOOT_FAIL|DEADLINE"
    users = _where(rf"""["']({names})["']""")
    # Slurm's own words are read where Slurm's text is parsed (SLURM_WORDS); everything else uses jobkit.state
    assert users <= {"jobkit/state.py", "jobkit/slurm.py", "jobkit/plan/slurmtext.py"}, users


def test_the_collector_names_no_workload():
    collector = {n: t for n, t in SOURCES.items() if n.startswith("jobkit/collect/")}
    for name, text in collector.items():
        assert not re.search(r"\b(charlm|vae|toy|beta|MIG|mig)\b", text), name


def test_no_workload_is_special_cased_by_name_outside_its_package():
    """`command` is a workload like charlm, vae and toy: the code outside its package (jobkit/command/)
    asks the protocol (`runs_itself`, `key_params`), never compares a name with a workload's."""
    import ast

    names = {"command", "charlm", "vae", "toy"}
    offenders = set()
    for name, text in SOURCES.items():
        if name.startswith("jobkit/command/"):
            continue
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            consts = {c.value for side in sides for c in ast.walk(side) if isinstance(c, ast.Constant)}
            if consts & names:
                offenders.add(f"{name}:{node.lineno}")
    assert not offenders, offenders
    assert not _where(r"\bcommand_mod\.NAME\b|\bKEY_PRIORITY\b"), "a workload's name or keys hard-coded"


def test_no_module_is_long():
    long = {n: t.count("\n") for n, t in SOURCES.items() if t.count("\n") > 450}
    assert not long, long


@pytest.mark.slurm
def test_show_script_is_the_script_that_is_sent(tmp_path, slurm_cluster):
    """`--dry-run --show-script` renders the same parameters that submitting gives submitit."""
    sweep = tmp_path / "show.toml"
    sweep.write_text('name = "showscript"\n[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = 3\n'
                     'time = "00:03:00"\ncpus = 1\nmem = "500M"\n')
    root = tmp_path / "runs"

    def jobkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobkit", *args, "--root", str(root)], capture_output=True,
                              text=True, timeout=300, env=slurm_cluster.env)

    shown = jobkit("submit", str(sweep), "--dry-run", "--show-script", "--json")
    assert shown.returncode == 0, shown.stderr
    script = next(iter(json.loads(shown.stdout)["scripts"].values()))
    sent = jobkit("submit", str(sweep), "--json")
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["runs"][0]["job_id"]
    try:
        submitted = root / "showscript" / ".submitit" / job_id / f"{job_id}_submission.sh"
        sent_script = re.sub(r"--comment=jobkit:[0-9a-f]{12}", "--comment=jobkit:<token>", submitted.read_text())
        assert sent_script.strip() == script.strip()
    finally:
        subprocess.run(["scancel", job_id], env=slurm_cluster.env, capture_output=True)


# --- floors: no import from a lower floor to a higher one ------------------------------------------

# Lowest first. A module may import its own floor or any floor below it, never one above. `submit`
# sits above `run` and `observe`: it pickles the job entry point (run/job.py) and reads the runs'
# current state (observe) before it decides new / resume / leave alone.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("contracts", ("jobkit/__init__.py", "jobkit/state.py", "jobkit/atomic.py", "jobkit/diskspace.py", "jobkit/schedcalls.py",
                   "jobkit/protocol.py", "jobkit/torchutil.py")),
    ("plan", ("jobkit/plan/",)),
    ("run folder and scheduler boundary", ("jobkit/store.py", "jobkit/slurm.py")),
    ("run", ("jobkit/run/", "jobkit/report.py")),
    ("workloads that ship with jobkit", ("jobkit/command/",)),
    ("observe", ("jobkit/observe/",)),
    ("submit", ("jobkit/submit/",)),
    ("collect", ("jobkit/collect/",)),
    ("cli and tools", ("jobkit/cli/", "jobkit/__main__.py", "jobkit/testing.py")),
]


def _module_file(module: str) -> str | None:
    """`jobkit.plan.spec` -> `jobkit/plan/spec.py` (or the package's __init__.py); None outside jobkit."""
    path = module.replace(".", "/")
    for candidate in (f"{path}.py", f"{path}/__init__.py"):
        if candidate in SOURCES:
            return candidate
    return None


def _floor(name: str) -> int:
    for level, (_, prefixes) in enumerate(FLOORS):
        if any(name == p or (p.endswith("/") and name.startswith(p)) for p in prefixes):
            return level
    raise AssertionError(f"{name} is on no floor: add it to FLOORS in tests/test_boundaries.py")


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    skip: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(ast.walk(node))
    return skip


def _imports() -> dict[str, set[str]]:
    """File -> the jobkit files it imports (at the top or inside a function; TYPE_CHECKING aside)."""
    graph: dict[str, set[str]] = {}
    for name, text in SOURCES.items():
        tree = ast.parse(text)
        skip = _type_checking_only(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if node in skip:
                continue
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets |= {f for f in map(_module_file, modules) if f and f != name}
        graph[name] = targets
    return graph


def test_every_module_is_on_a_floor_and_imports_only_its_floor_or_below():
    upward = [f"{a} ({FLOORS[_floor(a)][0]}) imports {b} ({FLOORS[_floor(b)][0]})"
              for a, targets in _imports().items() for b in sorted(targets) if _floor(b) > _floor(a)]
    assert not upward, "\n".join(upward)


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (a -> ... -> a), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if found := visit(nxt, path + [node]):
                return found
        done.add(node)
        return None

    return next((c for start in sorted(graph) if (c := visit(start, []))), None)


def test_the_import_graph_has_no_circle():
    graph = {a: {b for b in targets if not b.endswith("__init__.py")} for a, targets in _imports().items()}
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_floor_checks_catch_an_upward_import_and_a_circle():
    """The checks above fail on what they guard against (a test that cannot fail proves nothing)."""
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _floor("jobkit/plan/params.py") < _floor("jobkit/run/convergence.py")
    assert _floor("jobkit/store.py") < _floor("jobkit/run/faults.py")
    with pytest.raises(AssertionError, match="on no floor"):
        _floor("jobkit/newfolder/x.py")


# --- events: names from state.Event, written through the run's store -------------------------------

EVENT_WRITERS = {"event", "_event", "note"}


def _bare_event_strings(tree: ast.AST) -> list[int]:
    """Lines where an event name is a bare string: written (`event("failed", ...)`, `{"event": "x"}`)
    or compared (`ev.get("event") == "started"`)."""
    def is_event_field(node: ast.AST) -> bool:
        text = ast.unparse(node)
        return text.endswith('.get("event")') or text.endswith("['event']") or text.endswith('["event"]') \
            or text.endswith(".get('event')")

    def has_str(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str)
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(has_str(e) for e in node.elts)

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in EVENT_WRITERS and has_str(node.args[0]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(is_event_field(o) for o in operands) and any(has_str(o) for o in operands):
                lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "event" and has_str(value):
                    lines.append(node.lineno)
    return lines


def test_no_bare_event_strings():
    found = {name: lines for name, text in SOURCES.items() if (lines := _bare_event_strings(ast.parse(text)))}
    assert not found, f"use jobkit.state.Event, not a bare string: {found}"
    # the check sees each way of naming an event
    sample = 'run.event("failed", step=1)\nif ev.get("event") in ("started", "x"): pass\nd = {"event": "alarm"}\n'
    assert _bare_event_strings(ast.parse(sample)) == [1, 2, 3]
    assert not _bare_event_strings(ast.parse('run.event(Event.FAILED)\nif ev.get("event") == Event.STARTED: pass'))


# Modules that write events with `RunDir.event` directly: the run folder's store itself, the training
# loop and the job around it and its lease (inside a job), and the submission that records `submit_intent` and `submitted`. Everything
# else (the CLI above all) calls one of the store's named writers (record_stopped, record_cancelled, ...).
EVENT_WRITING_MODULES = {"jobkit/store.py", "jobkit/run/runner.py", "jobkit/run/job.py", "jobkit/run/lease.py",
                         "jobkit/command/supervise.py", "jobkit/submit/submission.py", "jobkit/submit/intents.py",
                         "jobkit/run/ckptwriter.py"}  # the loop's checkpoint writer (its background thread)


def test_events_are_written_through_the_store():
    writers = set()
    for name, text in SOURCES.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "event":
                writers.add(name)
    assert writers <= EVENT_WRITING_MODULES, writers - EVENT_WRITING_MODULES
    assert not {w for w in writers if w.startswith("jobkit/cli/")}


# --- `command` is a workload like the others --------------------------------------------------------

def _command_home(name: str) -> bool:
    """The `command` workload's own modules (wherever issue 25's item 3 puts them)."""
    return bool(re.search(r"(^|/)command(_run)?(\.py$|/)", name))


def _names_command(text: str) -> bool:
    """Compares with "command" (a workload's name or its key) or imports the command modules."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for o in (node.left, *node.comparators):
                elts = o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set)) else [o]
                if any(isinstance(e, ast.Constant) and e.value == "command" for e in elts):
                    return True
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] \
            if isinstance(node, ast.ImportFrom) else []
        if any(_command_home(m.replace(".", "/") + ".py") for m in modules):
            return True
    return False


# Modules that still special-case `command` by name; issue 25 item 3 (helper i25b) empties this list.
# The only module outside jobkit/command/ that may import it: `submit --help` prints the script contract.
NAMES_COMMAND_TODAY = {"jobkit/cli/submit_cmd.py"}


def test_no_name_check_of_command_outside_its_package():
    naming = {n for n, t in SOURCES.items() if not _command_home(n) and _names_command(t)}
    assert naming <= NAMES_COMMAND_TODAY, f"special-cases `command` by name: {sorted(naming - NAMES_COMMAND_TODAY)}"
    stale = NAMES_COMMAND_TODAY - naming
    assert not stale, f"no longer names `command`: remove {sorted(stale)} from NAMES_COMMAND_TODAY"
