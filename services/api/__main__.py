"""``python -m services.api`` (also ``echodesk api``)."""

from services.api.main import main

main()
