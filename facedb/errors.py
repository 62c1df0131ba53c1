"""Exceptions a user can act on, each with the CLI exit code it maps to."""
from __future__ import annotations


class FacedbError(Exception):
    """Base class: the message is meant to be shown to a person as is."""

    exit_code = 1


class ImageError(FacedbError):
    """One input image could not be used; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFoundError(FacedbError):
    """A subject (or face) that was asked for does not exist."""

    exit_code = 4


class AlreadyExistsError(FacedbError):
    exit_code = 1


class DatabaseBusyError(FacedbError):
    """Another facedb process holds the database and did not let go in time."""

    exit_code = 5


class ModelError(FacedbError):
    """A model pack is missing, malformed, or does not match the database."""

    exit_code = 6


class IndexCorruptError(FacedbError):
    """The search index cannot be opened or disagrees with its records."""

    exit_code = 7


class DependencyError(FacedbError):
    """A required library is missing or has an unsupported version."""

    exit_code = 6
