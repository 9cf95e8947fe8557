"""``python -m petcd``: the server, like the ``petcd`` command."""

from petcd.server.main import main

main()
