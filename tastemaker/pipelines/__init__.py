"""Example pipeline files (TOML), loadable by name: load_pipeline_config("default")."""
