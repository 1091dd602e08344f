"""kill TARGET...: SIGKILL, the chaos verb. Workers come back by their restart policy; brokers and
members stay down until `revive`."""

from supervisor.commands._action import action_command

COMMAND = action_command(
    "kill",
    "SIGKILL instances; workers are restarted by policy, brokers/members stay down until revive",
    "kill",
    "killed",
)
