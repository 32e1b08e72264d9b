"""The ``masra`` command line: one module per subcommand."""
