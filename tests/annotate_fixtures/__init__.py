"""Fixtures of the annotate tests: a package, so that its conftest.py is not taken for
tests/conftest.py when the suite imports modules for their doctests."""
