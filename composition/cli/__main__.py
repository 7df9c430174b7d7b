"""``python -m composition.cli`` runs the ``memeguard`` command."""

from composition.cli import main

main()
