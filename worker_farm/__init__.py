"""The worker farm: spawns and supervises `yadtq worker` processes, with crash injection."""

from worker_farm.supervisor import Farm, WorkerSpec

__all__ = ["Farm", "WorkerSpec"]
