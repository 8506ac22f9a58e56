"""The benchmark (`make bench`): a fast fake SES, the relay as its own process, load.

Not part of `make test`; see run.py.
"""
