#!/usr/bin/env python
"""A small HTTP load generator for ``facedb serve``: the command line of ``facedb.evaluation.loadgen``
(run ``--help`` for its options; the same as ``python -m facedb.evaluation.loadgen``)."""
from __future__ import annotations

import sys

from facedb.evaluation.loadgen import main

if __name__ == "__main__":
    sys.exit(main())
