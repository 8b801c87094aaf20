"""The compression methods and their parts: heads, nesting, losses, ADS, S-XBM, adaptors,
and the registry of methods (:mod:`smec.model.methods`)."""
