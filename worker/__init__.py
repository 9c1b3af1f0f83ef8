"""Baton's worker agent: runs inside any notebook, pulls jobs over HTTP, checkpoints, resumes.

Imports only httpx and the standard library, so it installs anywhere without torch.
"""

__version__ = "0.1.0"
