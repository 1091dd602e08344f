"""restart TARGET...: stop then start."""

from supervisor.commands._action import action_command

COMMAND = action_command("restart", "stop then start instances", "restart_instance", "restarted")
