"""`python -m baton_client`: the user commands alone, for a machine without the control plane."""

from baton_client.cli import app

app(prog_name="baton")
