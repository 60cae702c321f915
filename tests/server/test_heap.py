"""The server takes what start-up made out of the garbage collector's sight once it is ready."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

from topics_server.server import _settle_heap


class _Engine:
    ready = False


def test_start_up_objects_are_frozen_once_the_engine_is_ready() -> None:
    engine = _Engine()
    before = gc.get_freeze_count()

    async def main() -> int:
        settle = asyncio.create_task(_settle_heap(cast(Any, engine)))
        await asyncio.sleep(0.12)
        frozen_while_recovering = gc.get_freeze_count()
        engine.ready = True
        await asyncio.wait_for(settle, 5)
        return frozen_while_recovering

    try:
        assert asyncio.run(main()) == before  # nothing frozen before the state is rebuilt
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
