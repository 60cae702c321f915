"""Records to wire JSON (SPEC §0.5, §4.3, §9.4), spliced rather than built.

A record's ``data`` and ``meta`` are stored as compact JSON text already, so a
page is rendered by writing each record's object around them as text: no dict
per record and no re-encoding of payloads. The output is byte for byte what
``orjson.dumps`` makes of the record dicts: keys in the order ``$seq``, ``$ts``,
``$node`` (when the record has one), ``$tag`` (when asked for and present),
``data`` (unless left out), ``meta`` (when asked for and present). Node and tag
strings holding anything JSON escapes (a quote, a backslash, a control character)
are encoded by orjson; the rest are quoted as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat

import orjson

from topics_server.engine.log import RecordRun

__all__ = ["Shape", "render_records"]

# (include_tags, include_meta, include_data)
Shape = tuple[bool, bool, bool]


def _pieces(column: list[str | None] | None, start: int, stop: int, key: str) -> Iterator[str]:
    """Each record's ``,"key":"string"`` of a run's node or tag column ("" for none).

    Each distinct string is encoded once. Whether any needs escaping is checked for
    the whole run at once: strings without a quote, backslash or control character
    are quoted as they are, others are encoded by orjson.
    """
    if column is None:
        return repeat("")
    strings = column[start:stop]
    distinct = set(strings)
    distinct.discard(None)
    joined = "".join(distinct)  # type: ignore[arg-type]  # None was discarded
    plain = joined.isprintable() and '"' not in joined and "\\" not in joined
    if plain and len(distinct) * 2 > len(strings):  # mostly distinct (tags, say)
        return iter(["" if text is None else f',"{key}":"{text}"' for text in strings])
    table: dict[str | None, str] = {None: ""}
    for text in distinct:
        assert text is not None
        table[text] = f',"{key}":"{text}"' if plain else f',"{key}":{orjson.dumps(text).decode()}'
    return map(table.__getitem__, strings)


def render_records(runs: list[RecordRun], shape: Shape) -> orjson.Fragment:
    """The JSON array of the records in ``runs``, as a fragment to embed in a body."""
    with_tags, with_meta, with_data = shape
    parts: list[str] = []
    for first, ts, payload, start, stop in runs:
        seqs = range(first + start, first + stop)
        datas = payload.datas[start:stop] if with_data else None
        tags = payload.tags if with_tags else None
        metas = payload.metas if with_meta else None
        if payload.nodes is None and tags is None and metas is None:  # the common shape
            if datas is not None:
                mid = f',"$ts":{ts},"data":'
                parts += [
                    f'{{"$seq":{seq}{mid}{data}}}' for seq, data in zip(seqs, datas, strict=True)
                ]
            else:
                tail = f',"$ts":{ts}}}'
                parts += [f'{{"$seq":{seq}{tail}' for seq in seqs]
            continue
        stamp = f',"$ts":{ts}'
        nodes = _pieces(payload.nodes, start, stop, "$node")
        tag_pieces = _pieces(tags, start, stop, "$tag")
        meta_pieces: Iterable[str] = (
            repeat("}")
            if metas is None
            else ["}" if meta is None else f',"meta":{meta}}}' for meta in metas[start:stop]]
        )
        if datas is not None:
            parts += [
                f'{{"$seq":{seq}{stamp}{node}{tag},"data":{data}{meta}'
                for seq, node, tag, data, meta in zip(
                    seqs, nodes, tag_pieces, datas, meta_pieces, strict=False
                )
            ]
        else:
            parts += [
                f'{{"$seq":{seq}{stamp}{node}{tag}{meta}'
                for seq, node, tag, meta in zip(seqs, nodes, tag_pieces, meta_pieces, strict=False)
            ]
    return orjson.Fragment("[" + ",".join(parts) + "]")
