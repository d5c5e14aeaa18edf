"""``python -m diffctl_cli``: the same as the ``diffctl`` command."""

from diffctl_cli.app import main

main()
