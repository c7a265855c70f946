"""``python -m services.signaling`` (also ``echodesk signaling``)."""

from services.signaling.main import main

main()
