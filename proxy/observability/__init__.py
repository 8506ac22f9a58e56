"""Metrics, the health/readiness HTTP endpoint, structured logs."""
