"""``python -m shared`` is the ``echodesk`` command (for environments without the console script)."""

from shared.cli import main

main()
