"""From stored days to a recommendation: the model, its terms, the window, growth."""
