"""Workflows: what a user runs that composes several primitives (training set-up, INT8 with
its held-out score, benchmarking with an export on the fly, evaluation of any exported file,
tracking runs with their writers).  Nothing below this floor imports it; import the
modules directly (``from damoyolo.workflows.int8 import ...``)."""
