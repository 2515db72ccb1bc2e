"""vitc.passes."""
