"""The shpers desktop app: a Qt front end over the ``shpers_core`` engine."""
