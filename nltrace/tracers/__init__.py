"""Probe catalogue, event sources (backends) and the consumers that assemble them."""
