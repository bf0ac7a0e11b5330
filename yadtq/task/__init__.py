"""Tasks as data: the wire format, the registry of task functions, their outcomes and results."""
