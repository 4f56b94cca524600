"""`workload = "command"`: the user's own script as a workload, registered like `charlm`, `vae` and `toy`.

`params` checks and expands the script's arguments (no torch: `jobkit submit` validates command runs
without it); `supervise` runs the script as a child process under the runner's stop rules;
`workload.Command` is what the registry finds (`jobkit.workloads` entry point `command`). Nothing
outside this package knows a command run by its name: it differs from the others only in saying
`runs_itself = True` (see `jobkit.protocol.SelfRunning`).
"""
