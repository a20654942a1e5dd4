"""Re-initialization: the strategy registry and the pipeline that writes the new checkpoint."""
