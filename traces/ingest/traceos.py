"""Placeholder until the traceos parser lands."""

NAME = "traceos"


def sniff(path, head):
    return False


def parse(path):
    return iter(())
