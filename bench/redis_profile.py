"""Where a benchmark's Redis time goes: `INFO commandstats`, `INFO cpu` and a few counters, read
before and after the measured part of a run, as deltas per task.

commandstats counts the commands a Lua script calls too (`redis.call`), each with its own calls and
usec, beside the script call itself (`evalsha`, whose usec includes theirs); what is left of Redis's
CPU is the event loop: reading and parsing requests, writing replies, the append-only file and its
fsync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

# INFO counters whose deltas per task the profile prints beside the commands.
_COUNTERS = ("total_net_input_bytes", "total_net_output_bytes", "aof_current_size", "used_memory")


@dataclass(frozen=True)
class Snapshot:
    commands: dict[str, tuple[int, int]]  # command -> (calls, usec)
    cpu: dict[str, float]  # INFO cpu
    counters: dict[str, int]


def snapshot(url: str) -> Snapshot:
    with redis.Redis.from_url(url) as r:
        stats: dict[str, Any] = r.info("commandstats")
        cpu: dict[str, Any] = r.info("cpu")
        info: dict[str, Any] = r.info("all")
    commands = {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}
    return Snapshot(commands, {k: float(v) for k, v in cpu.items()},
                    {k: int(info[k]) for k in _COUNTERS if k in info})


def describe(before: Snapshot, after: Snapshot, tasks: int, top: int) -> str:
    """The `top` commands by usec spent in this interval, per task, with Redis's CPU and counters."""
    rows = []
    for name, (calls, usec) in after.commands.items():
        c0, u0 = before.commands.get(name, (0, 0))
        if calls > c0:
            rows.append((usec - u0, calls - c0, name))
    rows.sort(reverse=True)
    lines = [f"    {'command':<16} {'calls/task':>10} {'µs/task':>8} {'µs/call':>8}"]
    lines += [f"    {name:<16} {calls / tasks:>10.3f} {usec / tasks:>8.2f} {usec / calls:>8.2f}"
              for usec, calls, name in rows[:top]]
    # evalsha's usec holds its scripts' commands': the others' sum counts them twice
    inner = sum(u for u, _, name in rows if name not in ("evalsha", "eval", "fcall"))
    lines.append(f"    commands called by scripts or clients (all but evalsha): {inner / tasks:.1f} µs/task")
    cpu = {k: (after.cpu[k] - before.cpu.get(k, 0.0)) / tasks * 1e6 for k in after.cpu
           if k.startswith("used_cpu") and "children" not in k}
    lines.append("    INFO cpu, µs/task: " + ", ".join(f"{k.removeprefix('used_cpu_')} {v:.1f}"
                                                   for k, v in cpu.items()))
    lines.append("    per task: " + ", ".join(
        f"{k} {(after.counters[k] - before.counters.get(k, 0)) / tasks:,.0f} B" for k in after.counters))
    return "\n".join(lines)
