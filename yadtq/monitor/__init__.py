"""The monitor: heartbeats, the worker registry, dead-worker declarations and lost-work recovery."""
