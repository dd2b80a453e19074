"""Reaching clusters: listing a cluster's topics with their configuration."""
