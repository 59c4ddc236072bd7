"""Heads, metrics and the fast trainer on cached features."""
