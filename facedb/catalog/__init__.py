"""The system of record: subjects, images, faces (with embeddings), failures, keys and audit."""
from .models import ApiKey, AuditEntry, Base, Face, Failure, Image, PendingDelete, Setting, Subject

__all__ = ["ApiKey", "AuditEntry", "Base", "Face", "Failure", "Image", "PendingDelete", "Setting", "Subject"]
