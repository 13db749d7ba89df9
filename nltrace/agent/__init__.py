"""The BMC path: nltrace build, and the static nltrace-agent it builds for a target kernel."""
