"""Built-in jobs that ship with the worker."""
