"""The ``certscan`` command line: the top floor, and the only one that imports typer or rich.

Theory of operation
-------------------
``app`` builds the typer application and maps every error to one line and an exit code (0 ok,
1 findings at or above ``--fail-on``, 2 usage, 3 operational failure, 130 interrupted). Each
command module turns its options into a plain options object (``options`` does it for
``sweep`` and ``dispatch``), calls one function of a lower floor (the sweep use case, the
inventory, the reports, the daemon, the zone agents) and prints the result; ``console`` holds
the terminal pieces: tables of safe cells, the progress bar and :class:`ConsoleEvents`, the
sweep's events on a terminal. Nothing imports this package except ``scanner.__main__`` and the
console script.
"""
