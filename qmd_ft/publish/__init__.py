"""Publishing: registries (Hub or local dir), the model card, and the gated release flow."""
