"""Matchers: the one contract (:mod:`.base`) and its classical implementations."""
