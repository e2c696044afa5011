"""The HTTP service: ``tastemaker serve`` (FastAPI on uvicorn). Needs the ``serve`` extra."""
