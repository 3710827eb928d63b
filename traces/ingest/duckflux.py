"""Placeholder until the duckflux parser lands."""

NAME = "duckflux"


def sniff(path, head):
    return False


def parse(path):
    return iter(())
