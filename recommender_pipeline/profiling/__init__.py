"""Who reads a topic and what its keys look like: consumer groups and key samples."""
