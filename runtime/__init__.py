"""vitc.runtime."""
