"""One module per ``gwfollow`` sub-command, each with ``configure(parser)``,
``main(args)`` and an ``EXAMPLE`` shown by ``--help``.

Unlike the rest of the package, command modules import the science stack
(astropy, mocpy, numba kernels) inside ``main``: ``gwfollow --help`` and the
argument errors then answer at once (ligo.skymap's tools do the same).
"""
