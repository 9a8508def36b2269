"""recommend (placeholder)."""
