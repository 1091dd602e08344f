"""start TARGET...: start stopped instances (a FATAL one gets a fresh restart budget)."""

from supervisor.commands._action import action_command

COMMAND = action_command("start", "start stopped instances", "start_instance", "started")
