"""`make bench`: tfgate against a fast TF-Serving-compatible backend, nginx and a bare proxy.

Run it with ``python -m bench.run`` (``--help`` lists the knobs); see docs/performance.md.
"""
