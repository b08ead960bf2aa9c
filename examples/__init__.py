"""Examples that use authserver from the outside, as an API owner would (no server imports)."""
