"""The generated part of ``docs/``: event schemas, the configuration reference and the api's OpenAPI.

``echodesk docs`` writes them; ``echodesk docs --check`` and a test fail when a committed file no
longer matches the code it is generated from.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic.fields import FieldInfo

from shared import schemas
from shared.settings import SERVICE_SETTINGS, CommonSettings


def render() -> dict[str, str]:
    """Every generated file by its path under ``docs/``."""
    files = {f"events/{name}": text for name, text in schemas.render().items()}
    files.update(commands())
    files["configuration.md"] = configuration()
    files["api/openapi.json"] = openapi()
    return files


def commands() -> dict[str, str]:
    """JSON Schemas of the call commands (shared/commands.py): each verb's request, and the reply."""
    from shared.commands import COMMANDS, CommandAccepted

    files = {
        f"commands/{verb}.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for verb, model in COMMANDS.items()
    }
    files["commands/accepted.json"] = (
        json.dumps(CommandAccepted.model_json_schema(), indent=2, sort_keys=True) + "\n"
    )
    return files


def openapi() -> str:
    """The api's OpenAPI document (imported here only: the other services' images lack FastAPI)."""
    from services.api.app import openapi_document

    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(docs_dir: Path) -> list[Path]:
    written = []
    for name, text in render().items():
        path = docs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    events_dir = docs_dir / "events"
    wanted = set(render())
    for path in events_dir.iterdir():
        if f"events/{path.name}" not in wanted:
            path.unlink()
            written.append(path)
    return written


def stale(docs_dir: Path) -> list[str]:
    wanted = render()
    problems = [
        name
        for name, text in wanted.items()
        if not (docs_dir / name).exists() or (docs_dir / name).read_text() != text
    ]
    events_dir = docs_dir / "events"
    if events_dir.exists():
        problems += [f"events/{p.name}" for p in events_dir.iterdir() if f"events/{p.name}" not in wanted]
    return sorted(problems)


def configuration() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from `shared/settings.py` by `echodesk docs`; do not edit. Every setting comes from",
        "the environment. Settings shared by all services are `ECHODESK_<NAME>`; a service's own are",
        "`ECHODESK_<SERVICE>_<NAME>`, so one environment can configure the whole stack without clashes.",
        "",
        "## Shared by every service",
        "",
        *_table(CommonSettings, shared=True),
    ]
    for name, cls in SERVICE_SETTINGS.items():
        lines += ["", f"## {name}", "", *_table(cls, shared=False)]
    return "\n".join(lines) + "\n"


def _table(cls: type[CommonSettings], *, shared: bool) -> list[str]:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for field_name, field in cls.model_fields.items():
        if (field.validation_alias is not None) != shared:
            continue
        if not shared and field_name not in vars(cls).get("__annotations__", {}):
            continue  # inherited and not redefined: documented under the shared settings
        env = f"ECHODESK_{field_name.upper()}" if shared else cls.env_name(field_name)
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env}` | {_default(field_name, field)} | {meaning} |")
    return rows


def _default(name: str, field: FieldInfo) -> str:
    if name == "instance_id":
        return "the host name"
    if field.default_factory is not None:
        return "computed"
    value = field.default
    if value is None:
        return "unset"
    return f"`{getattr(value, 'value', value)}`"
