"""Run-record helpers shared by the ml/ workloads.

Nothing here imports torch at module import time, so the helpers also serve jobs and tools
that run without it; torch is imported inside the functions that need it.
"""
