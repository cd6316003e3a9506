"""Procedural synthetic datasets: expression dynamics, face and eye drawing, and the DFEW / SEE writers
behind ``python -m data_prep.synthesize``."""
