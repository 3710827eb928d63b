"""Placeholder until the workflow_sqlite parser lands."""

NAME = "workflow"


def sniff(path, head):
    return False


def parse(path):
    return iter(())
