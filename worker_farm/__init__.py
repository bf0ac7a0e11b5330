"""The worker farm: spawns and supervises `yadtq worker` processes, with crash injection."""

from worker_farm.spec import WorkerSpec
from worker_farm.supervisor import Farm

__all__ = ["Farm", "WorkerSpec"]
