"""ml_collections configs; each file's get_config() docstring holds its run command."""
