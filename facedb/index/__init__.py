"""The search index (Chroma, one cosine collection per pack) and the scikit-learn reference."""
