"""Page views, one module per page. They read through traces/queries/ and validate with
traces/forms/; they know nothing of formats."""
