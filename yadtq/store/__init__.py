"""The only code that talks to Redis: task records, their indexes, the Lua steps, live state."""
