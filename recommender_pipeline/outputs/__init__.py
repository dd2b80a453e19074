"""What people and tools receive: reports, charts, change scripts, the results topic."""
