"""The reliability suite: luaimport calls under flushes, eviction, restarts, cluster faults,
cancellation, concurrent start-up and restricted ACL users, on real servers.

It runs with the rest of the tests at a CI size.  ``LUAIMPORT_RELIABILITY=full`` selects the
full size, and ``LUAIMPORT_RELIABILITY_REPORT=<file>`` makes each scenario append its figures
to that file as JSON lines; ``bash scripts/reliability`` does both on every server of the matrix
and writes the figures into ``docs/reliability.md``.  No test asserts on timing, except that a
call failing during a restart returns within the client's socket timeout plus a margin.
"""
