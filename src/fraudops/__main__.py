"""``python -m fraudops`` is the ``fraudops`` command."""

from fraudops.cli import main

main()
