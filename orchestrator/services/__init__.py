"""Business logic: every experiment state change goes through these modules."""
