"""Sinks: where routed events and dead letters are published."""
