"""Logging through the node: each line is tagged with the task's name and
kept with the node's other task lines (``batonctl tasks logs``)."""

from wit_world.imports import host


def debug(message: str) -> None:
    host.log(host.Level.DEBUG, message)


def info(message: str) -> None:
    host.log(host.Level.INFO, message)


def warn(message: str) -> None:
    host.log(host.Level.WARN, message)


def error(message: str) -> None:
    host.log(host.Level.ERROR, message)
