"""Records and stores: what a run leaves behind and every later layer reads (schema, provenance, the store folder)."""
