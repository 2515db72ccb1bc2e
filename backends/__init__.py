"""vitc.backends."""
