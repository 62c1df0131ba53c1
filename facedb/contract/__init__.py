"""The contract every front end shares: the result models (``models``) and subject names
(``names``)."""
