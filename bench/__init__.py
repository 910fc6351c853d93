"""logferry's benchmarks on the real stack: ``python -m bench --help`` (``make bench``).

Not tests: nothing here is collected by pytest. Results go to ``bench/results/latest.json``
and the tables in ``BENCHMARKS.md``.
"""
