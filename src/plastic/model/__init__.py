"""What plastic knows about timm architectures."""
