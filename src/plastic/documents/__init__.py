"""The JSON documents and the option checks."""
