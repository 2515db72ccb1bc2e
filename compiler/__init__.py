"""vitc.compiler."""
