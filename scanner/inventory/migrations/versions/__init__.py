"""The revisions of the inventory schema, oldest first (``scanner.inventory.migrations``)."""
