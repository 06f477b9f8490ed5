"""zmqlab: orchestration of the ZeroMQ inter-thread signalling scenarios.

The pure core (targets, cells, verdicts, matrix, compare, reports) works on small
frozen dataclasses; backends (local processes, Docker) are the only I/O edges.
"""
