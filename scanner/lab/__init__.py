"""The built-in loopback lab: TLS servers on 127.x with a private PKI, for ``certscan demo``,
``certscan lab up``, the tests and the benchmark.

``certgen`` builds certificates of every kind (healthy, expired, weak, odd); ``catalogue`` says
which endpoint serves which; ``servers`` runs them with trio. It refuses any address outside
127.0.0.0/8 before binding. Imports only the vocabulary below it.
"""
