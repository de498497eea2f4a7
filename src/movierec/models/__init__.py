"""Recommendation models behind one interface, and the registry that stores them."""
