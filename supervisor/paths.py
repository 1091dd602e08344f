"""The runtime directory layout: where logs, data, the control token and pid files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RuntimePaths:
    root: Path

    def ensure(self) -> None:
        for directory in (self.root, self.logs_dir, self.root / "kafka", self.root / "hazelcast"):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def kafka_dir(self, name: str) -> Path:
        return self.root / "kafka" / name

    def hazelcast_dir(self, name: str) -> Path:
        return self.root / "hazelcast" / name

    @property
    def token(self) -> Path:
        return self.root / "control.token"

    @property
    def state_file(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def children_file(self) -> Path:
        return self.root / "children.json"

    @property
    def history_file(self) -> Path:
        return self.root / "console.history"
