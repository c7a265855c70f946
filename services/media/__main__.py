"""``python -m services.media`` (also ``echodesk media``)."""

from services.media.main import main

main()
