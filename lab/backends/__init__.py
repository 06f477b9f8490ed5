"""Backends: the only place where scenarios meet processes, containers and files."""
