"""What the running kernel offers nltrace: its symbols, BTF and struct layouts, and the feature checks."""
