"""One module per ``gwfollow`` sub-command, each with ``configure(parser)``,
``main(args)`` and an ``EXAMPLE`` shown by ``--help``."""
