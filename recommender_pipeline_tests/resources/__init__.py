"""The doors: the store, credentials, Confluent Cloud and its emulator."""
