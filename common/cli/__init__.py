"""Command-line support shared by both CLIs: run settings, flag parsing, quieting libraries."""
