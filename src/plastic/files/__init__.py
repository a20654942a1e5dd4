"""Reading and writing checkpoint files."""
