"""Request and response bodies of the REST API: pydantic models, apart from the ORM models."""
