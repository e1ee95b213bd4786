"""The built-in brokers: `postgres` (the default) and `none` (in-process)."""
