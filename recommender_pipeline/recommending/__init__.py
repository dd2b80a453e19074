"""From measured days to a partition count: the window, the model, limits and growth."""
