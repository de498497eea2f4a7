"""movierec: movie recommendations as serverless functions over one store."""

__version__ = "0.1.0"
