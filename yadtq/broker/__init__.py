"""Kafka plumbing through the standard protocol: client factories, the partition assignor, backlog."""
