"""Process and hardware facts, written once: CPU features and counts (:mod:`.cpu`), torch's
thread count for a block (:mod:`.threads`), available memory (:mod:`.memory`), and rank /
world size / process group / collectives (:mod:`.dist`).

The lowest floor of the package with :mod:`damoyolo.errors` and :mod:`damoyolo.config`:
it imports nothing else from damoyolo.
"""
