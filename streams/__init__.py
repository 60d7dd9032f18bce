"""Circulation's stream-processing side: settings, logging, the Faust app and the command line."""
