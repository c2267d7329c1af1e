"""jaxrec."""
