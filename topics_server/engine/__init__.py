"""The domain: topics as append-only logs, retention, tombstones, idempotency.

Pure of HTTP: handlers in ``topics_server.api`` translate requests into calls here.
"""
