"""The system of record: subjects, images, faces (with embeddings) and failed detections."""
from .models import Base, Face, Failure, Image, PendingDelete, Setting, Subject


__all__ = ["Base", "Catalog", "Face", "Failure", "Image", "PendingDelete", "Setting", "Subject"]
