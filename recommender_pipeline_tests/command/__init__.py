"""The one command: its checks, faults, digest and signals."""
