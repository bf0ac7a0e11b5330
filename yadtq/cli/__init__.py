"""The `yadtq` command: parses arguments and calls the library."""
