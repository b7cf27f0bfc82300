"""One feature per module; each returns the flows (and groups) it needs, never sends anything.

Every function is pure: it takes model entities and numbers and returns IR, verified against the table
declarations, so a flow that breaks its table's contract fails where it is made.
"""
