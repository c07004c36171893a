"""Renewal hooks: act on findings about expiring certificates (command, webhook, ACME).

``base`` holds the action interface, ``config`` parses ``[hooks.NAME]`` sections, ``command``
and ``webhook`` are two actions (``acme`` is the third), and ``runner`` decides what runs.
"""
