"""STARTTLS: the plaintext a protocol speaks before its TLS handshake.

``session`` bounds the conversation (:class:`Session`, :class:`Stop`); ``protocols`` holds the
line protocols and XMPP, the table of every preamble and the port defaults; ``binary`` holds
the binary ones (LDAP, PostgreSQL, MySQL, RDP). The engine calls
``protocols.negotiate`` between the TCP connect and the handshake.
"""
