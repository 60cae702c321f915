"""Records to wire JSON (SPEC §0.5, §4.3, §9.4), spliced rather than built.

A record's ``data`` and ``meta`` are stored as compact JSON text already, so a
page is rendered by writing each record's object around them as text: no dict
per record and no re-encoding of payloads. The output is byte for byte what
``orjson.dumps`` makes of the record dicts: keys in the order ``$seq``, ``$ts``,
``$node`` (when the record has one), ``$tag`` (when asked for and present),
``data`` (unless left out), ``meta`` (when asked for and present). Node and tag
strings are JSON-escaped by orjson.
"""

from __future__ import annotations

import orjson

from topics_server.engine.log import RecordRun

__all__ = ["Shape", "render_records"]

# (include_tags, include_meta, include_data)
Shape = tuple[bool, bool, bool]


def _string(text: str) -> str:
    return orjson.dumps(text).decode()


def render_records(runs: list[RecordRun], shape: Shape) -> orjson.Fragment:
    """The JSON array of the records in ``runs``, as a fragment to embed in a body."""
    with_tags, with_meta, with_data = shape
    parts: list[str] = []
    for first, ts, payload, start, stop in runs:
        nodes = payload.nodes
        tags = payload.tags if with_tags else None
        metas = payload.metas if with_meta else None
        if nodes is None and tags is None and metas is None:  # the common shape
            if with_data:
                mid = f',"$ts":{ts},"data":'
                parts += [
                    f'{{"$seq":{seq}{mid}{data}}}'
                    for seq, data in zip(
                        range(first + start, first + stop), payload.datas[start:stop], strict=True
                    )
                ]
            else:
                tail = f',"$ts":{ts}}}'
                parts += [f'{{"$seq":{seq}{tail}' for seq in range(first + start, first + stop)]
            continue
        datas = payload.datas
        for i in range(start, stop):
            text = f'{{"$seq":{first + i},"$ts":{ts}'
            if nodes is not None and (node := nodes[i]) is not None:
                text += f',"$node":{_string(node)}'
            if tags is not None and (tag := tags[i]) is not None:
                text += f',"$tag":{_string(tag)}'
            if with_data:
                text += f',"data":{datas[i]}'
            if metas is not None and (meta := metas[i]) is not None:
                text += f',"meta":{meta}'
            parts.append(text + "}")
    return orjson.Fragment("[" + ",".join(parts) + "]")
