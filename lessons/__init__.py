"""The lessons: numbered scripts that run with ``python lessons/NN_topic.py``."""
