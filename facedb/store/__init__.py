"""The stores and the right to use them.

``stores`` holds ``Store`` (the catalog and the index of one database, and the order in which a
write touches them), ``journal`` makes that two-store write crash-safe, ``coordination`` and
``locking`` decide which process may use the stores (the home lock, or PostgreSQL claims),
``sockets`` tells whether a ``facedb serve`` owns a home, and ``faults`` holds the crash points
the crash tests use. The SQL itself lives in ``facedb.catalog`` and the vectors in ``facedb.index``.
"""
