"""Chat server package."""
