"""A compressed free-tier week on the real topology: scenario, driver, measures, timeline."""
