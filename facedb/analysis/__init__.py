"""Analysis: from a file to aligned, embedded faces.

``files`` reads inputs safely, ``imaging`` decodes them within limits, ``engines`` holds the
detector/embedder back ends (the embedded ``sface`` pack, InsightFace packs), ``packs`` the
model contract a database is bound to, ``quality`` the enrollment floor, ``pipeline`` the pool
of analysis processes, and ``thumbnails`` crops enrolled faces for the web page. Nothing here
imports a store or a front end.
"""
