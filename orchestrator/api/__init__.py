"""HTTP routers: auth, experiments (users), workers and leases (worker tokens), admin."""
