"""Placeholder until the greentic parser lands."""

NAME = "greentic"


def sniff(path, head):
    return False


def parse(path):
    return iter(())
