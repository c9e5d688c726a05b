"""The published tables of the four papers (package data; see README.md here)."""
