"""Benchmarks: each measures one speed or cost against its reference in the same run (``make bench``).

They never fail a build: they print a table (and write it as JSON) with the target beside each figure.
"""
