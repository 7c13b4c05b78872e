"""The built-in strategies, one short module each.

Each is registered through the `harness.strategies` entry-point group, exactly as a
third-party plugin would be. Strategies marked `broken` are faithful models of code that
misbehaves; they are never repaired here, because the point is to measure what they do.
"""
