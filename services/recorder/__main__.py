"""``python -m services.recorder`` (also ``echodesk recorder``)."""

from services.recorder.main import main

main()
