"""The `anshim` command-line tool: crews' and developers' commands over the Anshim libraries."""
