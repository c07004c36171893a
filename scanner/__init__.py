"""certscan: find every TLS certificate on a network and never let one expire by surprise."""

__version__ = "0.1.0"
