"""The browser playground (``unmask playground``): see playground.py."""
