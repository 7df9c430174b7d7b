"""The producer side: upload validation, the in-process ``Producer`` and the HTTP ingestion API."""
