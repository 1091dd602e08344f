"""stop TARGET...: graceful stop (SIGTERM), no restart."""

from supervisor.commands._action import action_command

COMMAND = action_command("stop", "stop instances gracefully; they are not restarted", "stop_instance", "stopped")
