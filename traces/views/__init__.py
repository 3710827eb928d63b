"""Page views, one module per area. Views know the model and queries.py, nothing of formats."""
