"""vitc.core — the bottom layer: errors, the IR (canonical graph + block and pass records),
model file I/O and graph helpers. Imports no other vitc package."""
