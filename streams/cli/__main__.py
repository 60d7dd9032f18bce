"""``python -m streams.cli`` runs the command line, as the ``circulation`` script does."""

from streams.cli import main

main()
