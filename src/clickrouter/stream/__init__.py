"""ConsumerManager: event sources, offsets and the click/sale attribution join."""
