"""revive TARGET...: bring back killed brokers or members (or any stopped instance)."""

from supervisor.commands._action import action_command

COMMAND = action_command("revive", "start killed brokers/members again", "revive", "revived")
