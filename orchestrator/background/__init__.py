"""The control plane's own background work, run by RQ."""
