"""The HTTP edge: the FastAPI application, authentication and error rendering."""
