"""Alembic migrations of the api's database (applied at start-up and by ``echodesk api migrate``)."""
