"""Persistence behind the engine: the :class:`~topics_server.storage.base.Store` seam."""
