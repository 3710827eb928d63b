"""Placeholder until the runs_sqlite parser lands."""

NAME = "runs"


def sniff(path, head):
    return False


def parse(path):
    return iter(())
