"""Certificate files, bundles and keystores: the ``file`` endpoints of the inventory.

Theory of operation
-------------------
``walk`` turns what the user named (files, directories, globs) into candidate files inside the
configured roots, bounded in count, never following a symlinked directory (so a symlink loop
cannot recurse) and refusing any path whose real location is outside every root. ``decode``
turns one file's bytes (read up to a bound) into bundles of DER certificates: PEM (certificates
and PKCS#7 blocks), DER, PKCS#7, PKCS#12 (with a password) and Java keystores (JKS/JCEKS, with
``pyjks``), or into a reason it cannot. Neither opens a network connection nor the inventory;
``scanner.sweep.files`` stores the result as observations of endpoints ``file:/path`` (one per
keystore alias ``file:/path#alias``), whose chain is the bundle in file order.

Must never import ``scanner.inventory``, ``scanner.sweep``, ``reports`` or anything above.
"""
