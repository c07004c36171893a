"""Legacy capture: the certificate of a server our TLS library will not talk to.

Theory of operation
-------------------
A server that only offers what the bundled OpenSSL cannot (NULL, EXPORT, RC4 or 3DES suites, an
ECDSA certificate on P-192 or P-224, SSLv3) ends the normal handshake with a handshake_failure
or protocol_version alert, a hang-up, or a ServerHello OpenSSL rejects. Up to TLS 1.2 (and in
SSLv3) the server's Certificate message travels in clear, so the chain can still be read: the
engine (``scanner.engine.crew``) makes **one** more connection, after such a failure only, and
sends a ClientHello built here by hand that offers every cipher suite code and every group.
The server's first flight is read record by record up to ServerHelloDone (or the first message
after the certificates), and the connection is closed: no key exchange, no secrets, nothing
decrypted.

* :mod:`.hello` builds the ClientHello (pure, no randomness of its own).
* :mod:`.records` reads the server's flight from the bytes received so far (pure; every length
  read from the wire is checked against what is there and against its protocol bound; the only
  exception it raises is :class:`.records.RecordError`).
* :mod:`.suites` names the cipher suite codes, so ``weak_cipher`` grades the suite chosen.
* :mod:`.capture` is the I/O: send the hello, feed received bytes to the reader, stop at the
  byte bound (``max_chain_bytes``) or the caller's cancel scope.

This floor imports ``scanner.engine.net`` and ``scanner.engine.tls`` (the fault vocabulary) and
nothing above the engine.
"""
