"""JSON Schemas of the events, generated from the models into ``docs/events/`` (never by hand,
see :mod:`shared.docs`)."""

from __future__ import annotations

import json

from shared.events import EVENT_TYPES, event_schema
from shared.subjects import STREAMS


def render() -> dict[str, str]:
    """Every file of ``docs/events/`` by name, as the models say it should read."""
    files: dict[str, str] = {}
    for type_name, cls in EVENT_TYPES.items():
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"https://echodesk.voice/schemas/events/{type_name}.json"
        files[f"{type_name}.json"] = _dump(schema)
    union = event_schema()
    union["$id"] = "https://echodesk.voice/schemas/events/event.json"
    union["title"] = "Event"
    files["event.json"] = _dump(union)
    files["README.md"] = _index()
    return files


def _dump(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _index() -> str:
    lines = [
        "# Event schemas",
        "",
        "Generated from `shared/events.py` by `echodesk docs`; do not edit. Every event is one",
        "envelope (`id`, `type`, `version`, `occurred_at`, `source`, `tenant_id`, and for calls `call_id`",
        "and a per-call `sequence`) around typed `data`. `event.json` is the union, discriminated on `type`.",
        "The event `id` is also the `Nats-Msg-Id`: consumers de-duplicate by it.",
        "",
        "| type | schema | description |",
        "| --- | --- | --- |",
    ]
    for type_name, cls in EVENT_TYPES.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{type_name}` | [{type_name}.json]({type_name}.json) | {summary} |")
    lines += ["", "## Streams", "", "| stream | subjects | retention |", "| --- | --- | --- |"]
    for spec in STREAMS:
        hours = spec.max_age.total_seconds() / 3600
        retention = f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"
        lines.append(f"| `{spec.name}` | `{'`, `'.join(spec.subjects)}` | {retention} |")
    return "\n".join(lines) + "\n"
