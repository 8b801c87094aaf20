"""The data: the BEIR layout, the frozen encoder, and reading and writing the artifacts."""
