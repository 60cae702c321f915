"""The storage seam.

The engine owns all in-memory state and hands the store its commit points:
topic saves and drops, chunk appends, delete marks, front moves (eviction and
prefix deletes), and ephemeral seq reservations. Each returns a future that
resolves once committed, or None when the caller chose not to wait; the
engine decides per durability class what to wait for (see
``topics_server.engine.engine``). :class:`~topics_server.storage.sqlite.SqliteStore`
is the implementation; routers and queues persist their state through the
same writer (``SqliteStore.submit``), so one commit order covers everything.
"""
