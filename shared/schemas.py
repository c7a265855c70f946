"""JSON Schemas of the events, generated from the models into ``docs/events/`` (never by hand).

``echodesk schemas`` writes them; ``echodesk schemas --check`` (and a test) fails when the
committed files no longer match the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.events import EVENT_TYPES, event_schema
from shared.subjects import STREAMS

DEFAULT_DIR = Path("docs/events")


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


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render()
    written = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    for path in directory.iterdir():
        if path.name not in wanted:
            path.unlink()
            written.append(path)
    return written


def stale(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of files that are missing, differ from the models, or belong to no model any more."""
    wanted = render()
    problems = [
        name
        for name, text in wanted.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    if directory.exists():
        problems += [p.name for p in directory.iterdir() if p.name not in wanted]
    return sorted(problems)


def _dump(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _index() -> str:
    lines = [
        "# Event schemas",
        "",
        "Generated from `shared/events.py` by `echodesk schemas`; do not edit. Every event is one",
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
