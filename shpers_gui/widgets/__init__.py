"""One module per view of the app."""
