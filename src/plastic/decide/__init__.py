"""Turning measurements into decisions: the score, the recommendation, CI gates."""
